"""Gated Channel Attention (GCA), Sec. 2.3 / Fig. 3 of the paper.

Squeeze-aggregated excitation (SENetV2): the globally pooled vector feeds ``branches``
parallel 1x1 layers C -> C/reduction, each gated by ReLU; their concatenation is fused back
to C channels and a sigmoid gives per-channel weights for the input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["GCA"]


class GCA(nn.Module):
    """Gated Channel Attention.

    Args:
        dim: channels C.
        branches: parallel excitation branches (4 in the paper).
        reduction: each branch maps C -> C / reduction (32 in the authors' code).
    """

    def __init__(self, dim: int, branches: int = 4, reduction: int = 32) -> None:
        super().__init__()
        hidden = max(dim // reduction, 1)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.ReLU(inplace=True)) for _ in range(branches)
        )
        self.fuse = nn.Conv2d(branches * hidden, dim, 1)

    def gate(self, x: Tensor) -> Tensor:
        """The per-channel weights in (0, 1), shape (B, C, 1, 1)."""
        s = x.mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.fuse(torch.cat([b(s) for b in self.branches], dim=1)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)
