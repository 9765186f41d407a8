"""Mixed precision: the parts of a model that stay in float32 under bf16 autocast.

Training in bf16 (``deepspeed.precision: bf16``) runs the network under ``torch.autocast``
with float32 weights, DeepSpeed's ``torch_autocast`` mode. Its other bf16 mode, which casts the
parameters themselves, breaks these models in several ways: CompressAI's GDN re-parametrises
through float32 buffers that DeepSpeed (since 0.19) no longer casts, so its convolution mixes
dtypes (the first GPU run stopped there); BatchNorm's float32 running statistics meet bf16
weights; and the entropy bottleneck's quantiles, trained by their own optimiser, would move in
steps of 1/128 of their value.

Under autocast the convolutions run in bf16, but CompressAI's entropy models would compute
their cumulative densities with bf16 matrix products, rounding the hyperprior's rate, and
GDN's normalisation (a sum of squares under a square root) is where 8-bit mantissas cost
most: :func:`keep_in_float32` runs those modules in float32, as mixed precision does for
normalisation layers. The mixture likelihood of ``y`` casts to float32 itself
(:mod:`ltchm.entropy.mixture`).
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from typing import Any

import torch
from compressai.entropy_models import EntropyModel
from compressai.layers import GDN
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = ["FLOAT32_MODULES", "keep_in_float32"]

FLOAT32_MODULES: tuple[type[nn.Module], ...] = (GDN, EntropyModel)
"""Module types :func:`keep_in_float32` runs in float32 (subclasses included)."""


class _Islands(threading.local):
    """Per thread, the float32 contexts the pre-hooks entered, closed by the post-hooks in
    reverse order: module calls nest, and a hook pair cannot share a ``with`` block."""

    def __init__(self) -> None:
        self.stack: list[ExitStack | None] = []


_islands = _Islands()


def _enter_float32(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    x = next((a for a in args if isinstance(a, Tensor)), None)
    if x is None or not torch.is_autocast_enabled(x.device.type):
        _islands.stack.append(None)
        return None
    island = ExitStack()
    island.enter_context(torch.autocast(x.device.type, enabled=False))
    _islands.stack.append(island)
    return tuple(a.float() if isinstance(a, Tensor) and a.is_floating_point() else a for a in args)


def _leave_float32(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
    stack = _islands.stack
    island = stack.pop() if stack else None
    if island is not None:
        island.close()


def keep_in_float32(model: nn.Module) -> list[RemovableHandle]:
    """Run ``model``'s GDN layers and entropy models in float32 while autocast is on.

    Outside autocast the hooks change nothing. No parameter, buffer or state-dict key changes,
    so checkpoints are as without them. Returns the hooks' handles (``remove()`` undoes it).
    """
    handles: list[RemovableHandle] = []
    for module in model.modules():
        if isinstance(module, FLOAT32_MODULES):
            handles.append(module.register_forward_pre_hook(_enter_float32))
            # always_call: the context closes even when the forward raises
            handles.append(module.register_forward_hook(_leave_float32, always_call=True))
    return handles
