"""Dynamic Attention Model (DAM), Sec. 2.2 / Fig. 2(b) of the paper.

DAM has the shape of Cheng et al.'s attention block with every convolution of its residual
units replaced by an IDConv: ``x + trunk(x) * sigmoid(conv1x1(mask(x)))``, where trunk and
mask are three residual units each, and a unit is IDConv(K=1) -> ReLU -> IDConv(K=3) -> ReLU
-> IDConv(K=1), plus the input, then ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ltchm.layers.idconv import IDConv

__all__ = ["DAM", "DynamicResidualUnit"]


class DynamicResidualUnit(nn.Module):
    """A residual unit of IDConvs with kernel sizes ``kernel_sizes`` (1, 3, 1)."""

    def __init__(self, dim: int, kernel_sizes: Sequence[int] = (1, 3, 1), groups: int = 2) -> None:
        super().__init__()
        self.convs = nn.ModuleList(IDConv(dim, k, groups=groups) for k in kernel_sizes)
        # one activation module per use, as profilers count modules, not calls
        self.acts = nn.ModuleList(nn.ReLU(inplace=True) for _ in kernel_sizes)

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for i, conv in enumerate(self.convs[:-1]):
            h = self.acts[i](conv(h))
        # In place on the fresh output of the last IDConv: no extra full-size allocation.
        out: Tensor = self.acts[-1](self.convs[-1](h).add_(x))
        return out


class DAM(nn.Module):
    """Dynamic Attention Model.

    Args:
        dim: channels C.
        kernel_sizes: IDConv kernel sizes of one residual unit.
        groups: IDConv groups G.
        units: residual units per branch.
    """

    def __init__(
        self,
        dim: int,
        kernel_sizes: Sequence[int] = (1, 3, 1),
        groups: int = 2,
        units: int = 3,
    ) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            *(DynamicResidualUnit(dim, kernel_sizes, groups) for _ in range(units))
        )
        self.mask = nn.Sequential(
            *(DynamicResidualUnit(dim, kernel_sizes, groups) for _ in range(units)),
            nn.Conv2d(dim, dim, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or x.device.type != "cpu":
            return torch.addcmul(x, self.trunk(x), self.mask(x).sigmoid_())
        # Inference on the CPU runs channels-last inside: oneDNN's depth-wise convolution
        # and IDConv's per-channel broadcasts are 2-4x faster on it than on NCHW, while a
        # training step is slower on it (benchmarks/RESULTS.md, "Forward pass"; GPUs are
        # unmeasured and keep NCHW). The output keeps the input's format, so the layers
        # around DAM (dense convolutions) are unchanged.
        h = x.contiguous(memory_format=torch.channels_last)
        out = torch.addcmul(h, self.trunk(h), self.mask(h).sigmoid_())
        return out if h is x else out.contiguous()
