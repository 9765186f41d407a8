"""Process-wide runtime settings: the CPU allocator, and the compiled training forward."""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: the CLI imports this module first
    import torch
    from torch import nn

__all__ = ["compile_for_training", "tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned = False


def tune_allocator() -> bool:
    """Keep freed large blocks in the heap for reuse (glibc only).

    PyTorch's CPU allocator does not cache: every activation is a fresh malloc, which glibc
    serves with mmap above a small threshold, so each large tensor is page-faulted in anew.
    Raising the mmap and trim thresholds lets freed blocks be reused (the forward pass gets
    1.1-1.6x faster: benchmarks/RESULTS.md, "Forward pass"). Returns whether it applied.
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(
            _M_TRIM_THRESHOLD, (1 << 31) - 1
        )
    except (OSError, AttributeError):
        return False
    _tuned = bool(ok)
    return _tuned


def compile_for_training(model: nn.Module, device: torch.device) -> list[str]:
    """``torch.compile`` (Inductor) the training forward of ``model``'s compile units.

    The units are the module types a model lists in ``compile_units`` (LTCHM: DAM, whose
    IDConvs are some twenty small operations each, per-op overhead in eager mode); a model
    with none of them (no such attribute, or an ablation without DAM) is compiled whole.
    Only the training forward is compiled: in eval mode or without gradients (validation,
    entropy coding) the eager forward runs, so images of every size never trigger a
    recompilation and decoding stays exactly as without it.
    Parameters and ``state_dict`` keys are untouched. The first step pays the compilation
    (cached on disk for later processes). Returns the compiled modules' names.
    """
    if device.type == "cpu":
        if not (os.environ.get("CXX") or any(map(shutil.which, ("g++", "c++", "clang++")))):
            raise RuntimeError(
                "train.compile on CPUs needs a C++ compiler (g++ or clang++, or $CXX) on "
                "every worker: install one or set train.compile to false"
            )
        import torch._inductor.config as inductor_config

        # Inductor would hand oneDNN channels-last activations; its 1x1 stride-2 convolution
        # then computes weight gradients out of bounds when the input has fewer channels than
        # its block (the 3-channel skip of the first residual block): heap corruption
        # (uxlfoundation/oneDNN#6035, reproduced in eager mode here). Keep PyTorch's layouts.
        inductor_config.layout_optimization = False
    units = tuple(getattr(model, "compile_units", ()))
    targets = [(n, m) for n, m in model.named_modules() if units and isinstance(m, units)]
    targets = targets or [(type(model).__name__, model)]
    for _, module in targets:
        _compile_training_forward(module)
    return [n for n, _ in targets]


def _compile_training_forward(module: nn.Module) -> None:
    import torch

    eager: Callable[..., Any] = module.forward
    compiled = torch.compile(eager)

    def forward(*args: Any, **kwargs: Any) -> Any:
        if module.training and torch.is_grad_enabled():
            return compiled(*args, **kwargs)
        return eager(*args, **kwargs)

    # an instance attribute: nn.Module.__call__ finds it before the class's forward
    module.forward = forward
