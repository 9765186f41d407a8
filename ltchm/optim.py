"""Parameter groups and the learning-rate schedule of training.

CompressAI's recipe: the entropy bottleneck's quantiles are trained only by the auxiliary
loss with their own optimizer; everything else by the rate-distortion loss.
"""

from __future__ import annotations

import math

from torch import nn

from ltchm.config import TrainConfig

__all__ = ["learning_rate", "split_parameters"]


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(net parameters, auxiliary parameters), disjoint and covering every trainable one."""
    net: list[nn.Parameter] = []
    aux: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (aux if name.endswith(".quantiles") else net).append(p)
    return net, aux


def learning_rate(train: TrainConfig, step: int) -> float:
    """The network's learning rate at ``step`` (0-based) of ``train.steps``.

    A linear warm-up over ``lr_warmup_steps`` (step 0 already takes a small step), then
    ``step``: ``lr`` until ``lr_drop_at`` of the steps and ``lr_final`` after (the paper), or
    ``cosine``: from ``lr`` down to ``lr_final`` at the last step; ``fine_tune_lr`` takes
    ``lr``'s place when the run starts from ``init_from``.
    """
    warm, peak = train.lr_warmup_steps, train.peak_lr()
    if step < warm:
        return peak * (step + 1) / warm
    if train.lr_schedule == "step":
        return peak if step < train.lr_drop_at * train.steps else train.lr_final
    span = max(1, train.steps - 1 - warm)
    progress = min(1.0, (step - warm) / span)
    return train.lr_final + 0.5 * (peak - train.lr_final) * (1 + math.cos(math.pi * progress))
