"""Image quality metrics on float images in [0, 1] (or any ``data_range``)."""

from __future__ import annotations

import math

import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from torch import Tensor

__all__ = ["ms_ssim", "ms_ssim_db", "mse", "psnr"]


def mse(a: Tensor, b: Tensor) -> float:
    return float(torch.mean((a.double() - b.double()) ** 2))


def psnr(a: Tensor, b: Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images)."""
    m = mse(a, b)
    return math.inf if m == 0 else 10 * math.log10(data_range**2 / m)


def ms_ssim(a: Tensor, b: Tensor, data_range: float = 1.0) -> float:
    """MS-SSIM of two (3, H, W) or (B, 3, H, W) images (needs H, W > 160)."""
    if a.dim() == 3:
        a, b = a[None], b[None]
    if min(a.shape[-2:]) <= 160:
        raise ValueError(
            "MS-SSIM with 5 scales needs images larger than 160 px a side, "
            f"got {tuple(a.shape[-2:])}"
        )
    return float(_ms_ssim(a.float(), b.float(), data_range=data_range))


def ms_ssim_db(value: float) -> float:
    """MS-SSIM in dB: -10 log10(1 - MS-SSIM) (``inf`` at 1)."""
    return math.inf if value >= 1 else -10 * math.log10(1 - value)
