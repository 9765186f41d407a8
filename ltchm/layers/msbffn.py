"""Multi-Scale and Multi-Branch Feed-Forward Network (MSB-FFN), Sec. 2.4 / Fig. 4.

A 1x1 convolution expands C -> expansion * C; the result is split into four groups processed
by depth-wise convolutions of kernel 1, 3, 5 and 7 in a Res2Net-style cascade (each group's
output is also added to the next group's input); the outputs are concatenated, activated
and projected back to C by a 1x1 convolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["MSBFFN"]


class MSBFFN(nn.Module):
    """MSB-FFN.

    Args:
        dim: input and output channels.
        expansion: hidden = expansion * dim (4: HPHAM's 2N -> 8N).
        kernel_sizes: one depth-wise kernel size per branch.
    """

    def __init__(
        self, dim: int, expansion: int = 4, kernel_sizes: Sequence[int] = (1, 3, 5, 7)
    ) -> None:
        super().__init__()
        hidden = dim * expansion
        if hidden % len(kernel_sizes):
            raise ValueError(f"hidden width {hidden} does not split into {len(kernel_sizes)}")
        part = hidden // len(kernel_sizes)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.branches = nn.ModuleList(
            nn.Conv2d(part, part, k, padding=k // 2, groups=part) for k in kernel_sizes
        )
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        parts = self.fc1(x).chunk(len(self.branches), dim=1)
        outs: list[Tensor] = []
        for part, conv in zip(parts, self.branches, strict=True):
            outs.append(conv(part if not outs else part + outs[-1]))
        out: Tensor = self.fc2(self.act(torch.cat(outs, dim=1)))
        return out
