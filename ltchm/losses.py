"""Rate-distortion losses: ``lmbda * D + bpp`` (Eq. 3 of the paper)."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pytorch_msssim import ms_ssim
from torch import Tensor, nn

__all__ = ["RateDistortionLoss", "bpp_from_likelihoods"]


def bpp_from_likelihoods(likelihoods: dict[str, Tensor], num_pixels: int) -> Tensor:
    """Estimated bits per pixel: the information content of all latents over the pixels."""
    total = torch.stack([torch.log(lik).sum() for lik in likelihoods.values()]).sum()
    return -total / (math.log(2) * num_pixels)


class RateDistortionLoss(nn.Module):
    """``lmbda * MSE + bpp`` on images in [0, 1], or ``lmbda * (1 - MS-SSIM) + bpp``.

    Returns a dict with ``loss``, ``bpp``, ``mse`` and (MS-SSIM variant) ``ms_ssim``.
    """

    def __init__(self, lmbda: float, metric: Literal["mse", "ms-ssim"] = "mse") -> None:
        super().__init__()
        if metric not in ("mse", "ms-ssim"):
            raise ValueError(f"unknown distortion metric {metric!r}: mse or ms-ssim")
        self.lmbda, self.metric = lmbda, metric

    def forward(self, output: dict[str, Any], target: Tensor) -> dict[str, Tensor]:
        B, _, H, W = target.shape
        out: dict[str, Tensor] = {"bpp": bpp_from_likelihoods(output["likelihoods"], B * H * W)}
        x_hat = output["x_hat"]
        out["mse"] = torch.mean((x_hat - target) ** 2)
        if self.metric == "mse":
            distortion = out["mse"]
        else:
            out["ms_ssim"] = ms_ssim(x_hat.clamp(0, 1), target, data_range=1.0)
            distortion = 1 - out["ms_ssim"]
        out["loss"] = self.lmbda * distortion + out["bpp"]
        return out
