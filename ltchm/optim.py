"""Parameter groups: the network's parameters and the entropy bottleneck's quantiles.

CompressAI's recipe: the quantiles are trained only by the auxiliary loss with their own
optimizer; everything else by the rate-distortion loss.
"""

from __future__ import annotations

from torch import nn

__all__ = ["split_parameters"]


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(net parameters, auxiliary parameters), disjoint and covering every trainable one."""
    net, aux = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (aux if name.endswith(".quantiles") else net).append(p)
    return net, aux
