"""Building blocks of LTCHM (Sec. 2.2-2.5 of the paper)."""

from ltchm.layers.dam import DAM, DynamicResidualUnit
from ltchm.layers.gca import GCA
from ltchm.layers.hpham import HPHAM, HybridAttentionStage, LayerNorm2d
from ltchm.layers.idconv import IDConv
from ltchm.layers.msbffn import MSBFFN
from ltchm.layers.window_attention import WindowAttention

__all__ = [
    "DAM",
    "GCA",
    "HPHAM",
    "MSBFFN",
    "DynamicResidualUnit",
    "HybridAttentionStage",
    "IDConv",
    "LayerNorm2d",
    "WindowAttention",
]
