import math
from pathlib import Path

import numpy as np
import piq
import pytest
import torch
import torchvision

from ltchm.evaluation.classical import JPEG
from ltchm.evaluation.codecs import roundtrip
from ltchm.evaluation.metrics import (
    ALEXNET_CHECKPOINT,
    LpipsWeightsError,
    alexnet_weights_path,
    image_metrics,
    load_lpips,
    lpips_distance,
    to_tensor,
    vifp,
)
from ltchm.metrics import ms_ssim, psnr


def test_identical_images(ucm_images, alexnet_features: Path) -> None:
    model = load_lpips(alexnet_features)
    for img in ucm_images.values():
        m, notes = image_metrics(img, img.copy(), model)
        assert m["psnr"] == math.inf
        assert m["ms_ssim"] == pytest.approx(1.0, abs=1e-6)
        assert m["lpips"] == pytest.approx(0.0, abs=1e-7)
        assert m["vifp"] == pytest.approx(1.0, abs=1e-4)
        assert notes == []


@pytest.mark.parametrize("k", [1, 2, 5, 17])
def test_constant_offset_psnr_is_exact(ucm_images, k: int) -> None:
    img = np.clip(ucm_images["airplane00.tif"], 20, 230)
    shifted = img + np.uint8(k)
    m, _ = image_metrics(img, shifted, None)
    assert m["psnr"] == pytest.approx(20 * math.log10(255 / k), abs=1e-9)
    assert math.isnan(m["lpips"])  # not asked for: reported as undefined, never made up


def test_psnr_and_ms_ssim_against_independent_implementations(ucm_images, dota_crop) -> None:
    # On odd sizes the libraries differ by design (piq pads before each 2x downsampling,
    # pytorch-msssim crops), by up to ~2e-3 on the crops measured (DOTA, RGB.byte).
    for img, tol in ((ucm_images["airplane00.tif"], 1e-5), (dota_crop, 3e-3)):
        for quality in (5, 40):
            _, dec = roundtrip(JPEG(), img, quality)
            err = img.astype(np.float64) - dec.astype(np.float64)
            expected = 10 * math.log10(255.0**2 / np.mean(err**2))
            a, b = to_tensor(img), to_tensor(dec)
            m, _ = image_metrics(img, dec, None)
            assert m["psnr"] == pytest.approx(expected, abs=1e-9)
            assert psnr(a, b) == pytest.approx(expected, abs=1e-5)  # float32 [0, 1] inputs
            reference = float(piq.multi_scale_ssim(a[None], b[None], data_range=1.0))
            assert ms_ssim(a, b) == pytest.approx(reference, abs=tol)
            assert m["ms_ssim"] == ms_ssim(a, b)
            assert m["ms_ssim_db"] == pytest.approx(-10 * math.log10(1 - m["ms_ssim"]))


def test_quality_metrics_order_distortions(ucm_images) -> None:
    img = ucm_images["airplane00.tif"]
    noise = np.random.default_rng(0).standard_normal(img.shape)
    values = []
    for sigma in (2, 8, 24):
        noisy = np.clip(np.round(img + sigma * noise), 0, 255).astype(np.uint8)
        values.append(image_metrics(img, noisy, None)[0])
    for metric in ("psnr", "ms_ssim", "vifp"):
        seq = [v[metric] for v in values]
        assert seq[0] > seq[1] > seq[2], (metric, seq)


def test_small_images_are_explicit(alexnet_features: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 240, (120, 150, 3), dtype=np.uint8)
    m, notes = image_metrics(x, x + np.uint8(10), load_lpips(alexnet_features))
    assert math.isnan(m["ms_ssim"]) and math.isnan(m["ms_ssim_db"])
    assert any("ms_ssim" in n and "150x120" in n for n in notes)
    assert math.isfinite(m["psnr"]) and math.isfinite(m["vifp"]) and math.isfinite(m["lpips"])
    tiny = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    m, notes = image_metrics(tiny, tiny, load_lpips(alexnet_features))
    assert math.isnan(m["vifp"]) and math.isnan(m["lpips"]) and len(notes) == 3


def test_vifp_uses_piq(ucm_images) -> None:
    x = to_tensor(ucm_images["forest00.tif"])
    y = (x * 0.8 + 0.1).clamp(0, 1)
    ref = float(piq.vif_p(x[None].double(), y[None].double(), data_range=1.0))
    assert vifp(x, y) == pytest.approx(ref, rel=1e-4)


def _trunk(model) -> dict[str, torch.Tensor]:
    return {
        k.split(".", 1)[1]: v for k, v in model.net.state_dict().items()
    }  # "slice1.0.weight" -> "0.weight"


def test_lpips_loads_features_file(alexnet_features: Path, ucm_images) -> None:
    model = load_lpips(alexnet_features)
    saved = torch.load(alexnet_features, weights_only=True)
    trunk = _trunk(model)
    assert set(trunk) == set(saved)
    for key, value in saved.items():
        assert torch.equal(trunk[key], value), key
    # lpips' own [0, 1] -> [-1, 1] path gives the same distance as our scaling.
    x = to_tensor(ucm_images["airplane00.tif"])
    y = (x + 0.1).clamp(0, 1)
    ours = lpips_distance(model, x, y)
    with torch.no_grad():
        theirs = float(model(x[None], y[None], normalize=True).flatten()[0])
    assert ours == pytest.approx(theirs, rel=1e-6) and ours > 0
    # The calibrated linear layers are the package's, not random ones.
    import lpips

    packaged = torch.load(
        Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth",
        map_location="cpu",
        weights_only=True,
    )
    assert torch.equal(model.state_dict()["lin0.model.1.weight"], packaged["lin0.model.1.weight"])


def test_lpips_from_the_hub_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(LpipsWeightsError, match="never computed with random weights") as err:
        load_lpips(None)
    assert "--lpips-weights" in str(err.value) and ALEXNET_CHECKPOINT in str(err.value)
    # torchvision's checkpoint layout: the whole AlexNet, "features.N.*" and "classifier.*".
    full = torchvision.models.alexnet(weights=None).state_dict()
    cache = tmp_path / "hub" / "checkpoints" / ALEXNET_CHECKPOINT
    cache.parent.mkdir(parents=True)
    torch.save(full, cache)
    assert alexnet_weights_path(None) == cache
    trunk = _trunk(load_lpips(None))
    for key, value in full.items():
        if key.startswith("features."):
            assert torch.equal(trunk[key.removeprefix("features.")], value)


def test_lpips_bad_weights_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LpipsWeightsError, match="not found"):
        load_lpips(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(LpipsWeightsError, match="cannot read"):
        load_lpips(junk)
    vgg_like = tmp_path / "other.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None).features.state_dict(), vgg_like)
    with pytest.raises(LpipsWeightsError, match="AlexNet"):
        load_lpips(vgg_like)
    partial = tmp_path / "partial.pth"
    state = torchvision.models.alexnet(weights=None).features.state_dict()
    del state["10.weight"]
    torch.save(state, partial)
    with pytest.raises(LpipsWeightsError, match=r"10\.weight"):
        load_lpips(partial)
