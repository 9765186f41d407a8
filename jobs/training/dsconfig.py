"""The DeepSpeed configuration of a training run, generated from the one config schema."""

from __future__ import annotations

from typing import Any

from ltchm.config import Config

__all__ = ["deepspeed_config", "precision"]


def precision(cfg: Config, use_gpu: bool) -> str:
    """``bf16`` on GPUs, ``fp32`` on CPUs unless the config says otherwise."""
    if cfg.deepspeed.precision != "auto":
        return cfg.deepspeed.precision
    return "bf16" if use_gpu else "fp32"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def deepspeed_config(cfg: Config, world_size: int, use_gpu: bool) -> dict[str, Any]:
    """ds_config for ``world_size`` data-parallel ranks.

    ``train.batch_size`` is the global batch (the paper's 8); each rank takes an equal share.
    The optimiser is Adam; ``torch_adam`` selects PyTorch's implementation, which runs on CPUs
    and GPUs alike without building DeepSpeed's fused kernels. bf16 is mixed precision:
    ``torch.autocast`` with float32 weights, gradients and optimiser state. The entropy
    bottleneck's quantiles are not given to DeepSpeed: they have their own optimiser
    (``jobs.training``).
    """
    if cfg.train.batch_size % world_size:
        raise ValueError(
            f"train.batch_size {cfg.train.batch_size} is not divisible by {world_size} workers"
        )
    micro = cfg.train.batch_size // world_size
    prec = precision(cfg, use_gpu)
    ds: dict[str, Any] = {
        "train_batch_size": micro * world_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": 1,
        "optimizer": {
            "type": "Adam",
            "params": {
                "lr": cfg.train.peak_lr(),
                "betas": [0.9, 0.999],
                "eps": 1e-8,
                "weight_decay": 0.0,
                "torch_adam": True,
            },
        },
        "zero_optimization": {"stage": cfg.deepspeed.zero_stage},
        "gradient_clipping": cfg.train.clip_grad_norm or 0.0,
        # bf16 as autocast over float32 weights: DeepSpeed's "bf16" mode casts the weights
        # themselves, which CompressAI's GDN, BatchNorm's statistics and the quantiles' own
        # optimiser do not survive (ltchm.layers.precision says how). No module is "lower
        # precision safe", so gradients are all-reduced in float32, not bf16 as autocast's
        # default would: tens of MB per step for these models.
        "torch_autocast": {
            "enabled": prec == "bf16",
            "dtype": "bfloat16",
            "lower_precision_safe_modules": [],
        },
        "bf16": {"enabled": False},
        "fp16": {"enabled": False},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    return _merge(ds, cfg.deepspeed.extra)
