"""JPEG2000 at the bytes of a learned file: the reference the demo prints beside each scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.scenes.baseline import jpeg2000_at_bytes


def _scene(path: Path, dtype: str, bands: int, alpha: bool = False) -> Path:
    rng = np.random.default_rng(0)
    h, w = 150, 170
    yy, xx = np.mgrid[0:h, 0:w]
    top = 255 if dtype == "uint8" else 4000
    smooth = (np.sin(xx / 9.0) + np.cos(yy / 13.0) + 2) / 4 * top
    data = np.stack([smooth + rng.normal(0, top / 50, (h, w)) for _ in range(bands)])
    data = np.clip(data, 0, top).astype(dtype)
    count = bands + alpha
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": count,
        "dtype": dtype,
        "crs": "EPSG:32618",
        "transform": from_origin(500000, 4000000, 30, 30),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, list(range(1, bands + 1)))
        if alpha:
            a = np.full((h, w), 255, dtype)
            a[:, :40] = 0  # nodata strip
            dst.write(a, count)
            dst.colorinterp = [*dst.colorinterp[:bands], rasterio.enums.ColorInterp.alpha]
    return path


@pytest.mark.parametrize(("dtype", "bands"), [("uint8", 3), ("uint16", 4), ("uint16", 1)])
def test_meets_the_byte_target_and_quality_rises_with_bytes(tmp_path, dtype, bands) -> None:
    scene = _scene(tmp_path / "s.tif", dtype, bands)
    small, large = jpeg2000_at_bytes(scene, 3000), jpeg2000_at_bytes(scene, 12000)
    for result, target in ((small, 3000), (large, 12000)):
        assert abs(result.bytes - target) <= 0.05 * target, (result.bytes, target)
        assert len(result.psnr_db) == bands
    assert large.psnr_min_db > small.psnr_min_db + 1
    assert large.bpp == pytest.approx(8 * large.bytes / (150 * 170))


def test_alpha_is_a_mask_not_a_band(tmp_path) -> None:
    scene = _scene(tmp_path / "a.tif", "uint8", 3, alpha=True)
    result = jpeg2000_at_bytes(scene, 6000)
    assert len(result.psnr_db) == 3 and result.psnr_min_db is not None


def test_float_scenes_have_no_jpeg2000_reference(tmp_path) -> None:
    path = tmp_path / "f.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1,
                       dtype="float32") as dst:  # fmt: skip
        dst.write(np.zeros((1, 8, 8), "float32"))
    with pytest.raises(ValueError, match="float32"):
        jpeg2000_at_bytes(path, 100)
