import math
from pathlib import Path

import pytest

from ltchm.evaluation.classical import JPEG, WebP
from ltchm.evaluation.codecs import roundtrip
from ltchm.evaluation.metrics import image_metrics, load_lpips
from ltchm.evaluation.runner import RECORD_FIELDS, evaluate


def test_pool_and_in_process_agree(ucm_images, dota_crop, alexnet_features: Path) -> None:
    images = [*ucm_images.items(), ("dota_crop", dota_crop)]
    codecs = [JPEG(qualities=(10, 60)), WebP(qualities=(20, 80))]
    kwargs = {"lpips_weights": str(alexnet_features), "progress": False}
    pooled = evaluate(images, codecs, workers=2, total_images=len(images), **kwargs)
    inline = evaluate(images, codecs, workers=1, **kwargs)
    assert len(pooled) == len(inline) == len(images) * 4
    # ordered by codec, then ladder, then image
    assert [(r["codec"], r["setting"], r["image"]) for r in pooled] == [
        (c.name, s, name) for c in codecs for s in c.ladder() for name, _ in images
    ]
    for a, b in zip(pooled, inline, strict=True):
        assert set(a) == set(RECORD_FIELDS)
        for key in ("image", "codec", "setting", "bytes", "bpp", "psnr"):
            assert a[key] == b[key], key
        for key in ("ms_ssim", "lpips", "vifp"):  # torch thread counts differ: rounding only
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
    # Each record is the real file's size and the metrics of the real decoded image.
    model = load_lpips(alexnet_features)
    r = pooled[-1]
    img = dict(images)[r["image"]]
    n, dec = roundtrip(WebP(), img, r["setting"])
    assert r["bytes"] == n and r["bpp"] == n * 8 / (img.shape[0] * img.shape[1])
    expected, _ = image_metrics(img, dec, model)
    for key, value in expected.items():
        assert r[key] == pytest.approx(value, rel=1e-6), key
    assert r["label"] == "WebP (libwebp)" and r["setting_name"] == "quality"
    assert r["encode_s"] > 0 and r["decode_s"] > 0


def test_small_images_carry_notes(dota_crop) -> None:
    small = dota_crop[:100, :120]
    (r,) = evaluate([("small", small)], [JPEG(qualities=(50,))], use_lpips=False, workers=1)
    assert math.isnan(r["ms_ssim"]) and math.isnan(r["lpips"]) and math.isfinite(r["vifp"])
    assert "ms_ssim: undefined for 120x100" in r["notes"]


def test_bad_inputs(ucm_images, tmp_path: Path, monkeypatch) -> None:
    img = ucm_images["forest00.tif"]
    with pytest.raises(ValueError, match="distinct"):
        evaluate([("a", img)], [JPEG(), JPEG()], use_lpips=False, workers=1)
    with pytest.raises(ValueError, match="two images are named 'a'"):
        evaluate([("a", img), ("a", img)], [JPEG((50,))], use_lpips=False, workers=1)
    # LPIPS weights are checked before any work starts.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from ltchm.evaluation.metrics import LpipsWeightsError

    with pytest.raises(LpipsWeightsError):
        evaluate([("a", img)], [JPEG((50,))], workers=1)
