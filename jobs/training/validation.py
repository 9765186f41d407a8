"""Validation with the real codec: bytes of real files, not the likelihoods' estimate."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ltchm.codec import ImageCodec, bits_per_pixel
from ltchm.losses import bpp_from_likelihoods
from ltchm.metrics import ms_ssim, psnr
from ltchm.models import CodingModel

__all__ = ["validate"]


@torch.no_grad()
def validate(model: nn.Module, images: Sequence[Tensor]) -> dict[str, float]:
    """Mean bpp (real bytes), estimated bpp, PSNR and MS-SSIM over ``images`` (3, H, W).

    Codes with a float32 copy of the model whose tables are built from the current weights,
    so training is not disturbed.
    """
    if not images:
        return {}
    snapshot: CodingModel = copy.deepcopy(model).float().cpu().eval()
    snapshot.update(force=True)
    codec = ImageCodec(snapshot, device="cpu")
    sums = {"val_bpp": 0.0, "val_bpp_estimated": 0.0, "val_psnr": 0.0}
    ssim, n_ssim = 0.0, 0
    for x in images:
        x = x.float().cpu()
        H, W = x.shape[-2:]
        data = codec.encode(x)
        x_hat = codec.decode(data)
        sums["val_bpp"] += bits_per_pixel(len(data), H, W)
        out = snapshot(codec.pad(x)[None])
        sums["val_bpp_estimated"] += float(bpp_from_likelihoods(out["likelihoods"], H * W))
        sums["val_psnr"] += psnr(x_hat, x)
        if min(H, W) > 160:
            ssim += ms_ssim(x_hat, x)
            n_ssim += 1
    metrics = {k: v / len(images) for k, v in sums.items()}
    metrics["val_ms_ssim"] = ssim / n_ssim if n_ssim else math.nan
    return metrics
