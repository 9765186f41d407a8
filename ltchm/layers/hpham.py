"""Hyper-Prior Hybrid Attention Model (HPHAM), Sec. 2.5 / Fig. 5 / Eq. (6) of the paper.

Two stages (W-MSA, then SW-MSA). In each, a LayerNorm and a 1x1 convolution feed two halves:
one through (shifted) window attention, the other through Gated Channel Attention; the
halves are concatenated, fused by a 1x1 convolution and added to the input; an MSB-FFN on
the LayerNormed result is added again.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ltchm.layers.gca import GCA
from ltchm.layers.msbffn import MSBFFN
from ltchm.layers.window_attention import WindowAttention

__all__ = ["HPHAM", "HybridAttentionStage", "LayerNorm2d"]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.norm(x.permute(0, 2, 3, 1))
        return out.permute(0, 3, 1, 2)


class HybridAttentionStage(nn.Module):
    """One stage of HPHAM (Eq. 6).

    Args:
        dim: channels 2C of the input; each branch gets C.
        shift: 0 for W-MSA, window_size // 2 for SW-MSA.
        use_gca: ``False`` passes the channel half through unchanged (the "w/o GCA" ablation).
    """

    def __init__(
        self,
        dim: int,
        window_size: int = 4,
        head_dim: int = 32,
        shift: int = 0,
        use_gca: bool = True,
        ffn_expansion: int = 4,
    ) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"HPHAM splits channels in two; got odd dim {dim}")
        half = dim // 2
        self.norm1 = LayerNorm2d(dim)
        self.conv_in = nn.Conv2d(dim, dim, 1)
        self.attn = WindowAttention(half, window_size, head_dim, shift)
        self.gca = GCA(half) if use_gca else nn.Identity()
        self.conv_out = nn.Conv2d(dim, dim, 1)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = MSBFFN(dim, expansion=ffn_expansion)

    def forward(self, x: Tensor) -> Tensor:
        x_cha, x_trans = self.conv_in(self.norm1(x)).chunk(2, dim=1)
        mid: Tensor = self.conv_out(torch.cat([self.gca(x_cha), self.attn(x_trans)], dim=1)) + x
        out: Tensor = self.ffn(self.norm2(mid))
        return out + mid


class HPHAM(nn.Module):
    """HPHAM: a W-MSA stage followed by an SW-MSA stage (shift = window_size // 2)."""

    def __init__(
        self, dim: int, window_size: int = 4, head_dim: int = 32, use_gca: bool = True
    ) -> None:
        super().__init__()
        self.stages = nn.Sequential(
            HybridAttentionStage(dim, window_size, head_dim, 0, use_gca),
            HybridAttentionStage(dim, window_size, head_dim, window_size // 2, use_gca),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.stages(x)
        return out
