import math

import torch

from ltchm.losses import RateDistortionLoss, bpp_from_likelihoods


def test_hand_checked_loss() -> None:
    x = torch.zeros(1, 3, 64, 64)
    out = {
        "x_hat": torch.full((1, 3, 64, 64), 0.1),
        "likelihoods": {"y": torch.full((1, 4, 4, 4), 0.5), "z": torch.full((1, 4, 2, 2), 0.25)},
    }
    # 64 y-elements at 1 bit + 16 z-elements at 2 bits over 4096 pixels
    r = RateDistortionLoss(512)(out, x)
    assert math.isclose(float(r["bpp"]), 96 / 4096, rel_tol=1e-6)
    assert math.isclose(float(r["mse"]), 0.01, rel_tol=1e-5)
    assert math.isclose(float(r["loss"]), 512 * 0.01 + 96 / 4096, rel_tol=1e-5)


def test_ms_ssim_variant() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 256, 256)
    out = {"x_hat": x.clone(), "likelihoods": {"y": torch.full((1, 2, 16, 16), 0.5)}}
    r = RateDistortionLoss(8, "ms-ssim")(out, x)
    assert math.isclose(float(r["ms_ssim"]), 1.0, rel_tol=1e-5)
    assert math.isclose(
        float(r["loss"]), float(bpp_from_likelihoods(out["likelihoods"], 65536)), rel_tol=1e-4
    )
