"""The building blocks of TCM (Liu et al., CVPR 2023): Transformer-CNN mixture blocks and the
SWAtten attention of its channel-wise entropy model.

Written from the paper (Fig. 2, Fig. 4); where the paper leaves a detail implicit we follow
facts of the authors' released code: the conv branch adds its input once more around a
residual block, the Swin block's MLP expands 4x with GELU, SWAtten squeezes its input to
128 channels around a Cheng2020 attention block whose non-local branch is a W/SW Swin pair.
Window attention is :class:`~ltchm.layers.WindowAttention`, which pads maps that are not a
multiple of the window and masks the padding (the released code needs multiples of the
window; on those the two agree).
"""

from __future__ import annotations

import torch
from compressai.layers import ResidualBlock, conv1x1, conv3x3
from torch import Tensor, nn

from ltchm.layers.hpham import LayerNorm2d
from ltchm.layers.window_attention import WindowAttention

__all__ = ["ConvTransBlock", "ResidualUnit", "SWAtten", "SwinBlock2d"]


class SwinBlock2d(nn.Module):
    """A Swin transformer block on a (B, C, H, W) map: LN -> (S)W-MSA -> +, LN -> MLP -> +.

    The MLP's two linear layers are 1x1 convolutions (the same weights on channels-first
    maps, no permutes).
    """

    def __init__(self, dim: int, head_dim: int, window_size: int, shift: int = 0) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.attn = WindowAttention(dim, window_size, head_dim, shift)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, 4 * dim, 1), nn.GELU(), nn.Conv2d(4 * dim, dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        out: Tensor = x + self.mlp(self.norm2(x))
        return out


class ConvTransBlock(nn.Module):
    """The Transformer-CNN mixture (TCM) block (Fig. 2): a 1x1 convolution splits the channels
    into a CNN half (residual block) and a transformer half (Swin block); a 1x1 convolution
    merges them and the result is added to the input.

    Args:
        conv_dim, trans_dim: channels of the two branches (the block has their sum).
        shift: 0 (W-MSA) or window_size // 2 (SW-MSA); TCM alternates them.
    """

    def __init__(
        self, conv_dim: int, trans_dim: int, head_dim: int, window_size: int, shift: int = 0
    ) -> None:
        super().__init__()
        dim = conv_dim + trans_dim
        self.conv_dim, self.trans_dim = conv_dim, trans_dim
        self.split = nn.Conv2d(dim, dim, 1)
        self.conv_block = ResidualBlock(conv_dim, conv_dim)
        self.trans_block = SwinBlock2d(trans_dim, head_dim, window_size, shift)
        self.merge = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        c, t = self.split(x).split((self.conv_dim, self.trans_dim), dim=1)
        c = self.conv_block(c) + c
        out: Tensor = x + self.merge(torch.cat([c, self.trans_block(t)], dim=1))
        return out


class ResidualUnit(nn.Module):
    """Cheng2020's attention residual unit: 1x1 (halve) -> 3x3 -> 1x1 (restore), +, ReLU."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            conv1x1(dim, dim // 2),
            nn.ReLU(),
            conv3x3(dim // 2, dim // 2),
            nn.ReLU(),
            conv1x1(dim // 2, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = torch.relu(self.conv(x) + x)
        return out


class SWAtten(nn.Module):
    """Swin-transformer attention with channel squeezing (Fig. 4): a 1x1 convolution squeezes
    the support to ``inter_dim`` channels; a trunk of residual units is gated by the sigmoid
    of a non-local branch (a W-MSA and an SW-MSA block, then residual units and a 1x1
    convolution), the squeezed input is added back and a 1x1 convolution restores the width.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        inter_dim: int = 128,
        head_dim: int = 16,
        window_size: int = 8,
    ) -> None:
        super().__init__()
        self.in_conv = conv1x1(in_dim, inter_dim)
        self.non_local = nn.Sequential(
            SwinBlock2d(inter_dim, head_dim, window_size, 0),
            SwinBlock2d(inter_dim, head_dim, window_size, window_size // 2),
        )
        self.conv_a = nn.Sequential(*(ResidualUnit(inter_dim) for _ in range(3)))
        self.conv_b = nn.Sequential(
            *(ResidualUnit(inter_dim) for _ in range(3)), conv1x1(inter_dim, inter_dim)
        )
        self.out_conv = conv1x1(inter_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_conv(x)
        gate = torch.sigmoid(self.conv_b(self.non_local(x)))
        out: Tensor = self.out_conv(self.conv_a(x) * gate + x)
        return out
