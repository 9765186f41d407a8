"""The classical reference for a compressed scene: JPEG2000 at the same number of bytes.

GDAL's JP2OpenJPEG driver (OpenJPEG, 9/7 wavelet) codes the scene's bands at a target size
(its ``QUALITY`` option is the file size as a percentage of the raw data, which OpenJPEG's
rate control meets to within a few percent; two corrections bring it closer), and the
result is judged as ``compress-scenes`` judges its own files: PSNR per band in the native
range over the valid pixels (peak 255 for 8-bit data, else the band's valid range).
"""

from __future__ import annotations

import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from pipeline.scenes.verify import BandErrors, psnr_db

__all__ = ["BaselineResult", "jpeg2000_at_bytes"]


@dataclass
class BaselineResult:
    codec: str
    bytes: int
    bpp: float
    psnr_db: list[float | None]
    psnr_min_db: float | None


def _write(path: Path, data: np.ndarray, dtype: str, quality: float) -> int:
    with warnings.catch_warnings():  # a bare raster: its georeferencing plays no part here
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        _write_jp2(path, data, dtype, quality)
    return path.stat().st_size


def _write_jp2(path: Path, data: np.ndarray, dtype: str, quality: float) -> None:
    count, height, width = data.shape
    with rasterio.open(
        path, "w", driver="JP2OpenJPEG", width=width, height=height, count=count,
        dtype=dtype, QUALITY=f"{quality:.6g}", REVERSIBLE="NO",
    ) as dst:  # fmt: skip
        dst.write(data)


def jpeg2000_at_bytes(scene: str | Path, target_bytes: int, tries: int = 3) -> BaselineResult:
    """JPEG2000 of ``scene``'s bands (alpha left out: masks are not image content) at about
    ``target_bytes``, and its PSNR per band."""
    with rasterio.open(scene) as src:
        bands = [i + 1 for i, c in enumerate(src.colorinterp) if c != ColorInterp.alpha]
        data = src.read(bands)
        valid = src.read_masks(bands) > 0
        dtype = src.dtypes[0]
        height, width = src.height, src.width
    if dtype not in ("uint8", "uint16", "int16"):
        raise ValueError(f"{scene}: JPEG2000 takes 8/16-bit integer bands, not {dtype}")
    quality = 100.0 * target_bytes / data.nbytes
    with tempfile.TemporaryDirectory(prefix="ltchm-j2k-") as tmp:
        path = Path(tmp) / "scene.jp2"
        size = _write(path, data, dtype, quality)
        for _ in range(tries - 1):
            if abs(size - target_bytes) <= 0.02 * target_bytes:
                break
            quality *= target_bytes / size
            size = _write(path, data, dtype, quality)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as dec:
                decoded = dec.read()
    errors = BandErrors.empty(len(bands))
    for i in range(len(bands)):
        ok = valid[i]
        if not ok.any():
            continue
        ref = data[i][ok].astype(np.float64)
        diff = decoded[i][ok].astype(np.float64) - ref
        errors.sse[i] = float(np.dot(diff, diff))
        errors.count[i] = int(diff.size)
        errors.lo[i], errors.hi[i] = float(ref.min()), float(ref.max())
        errors.max_abs[i] = float(np.abs(diff).max())
    psnr, _ = psnr_db(errors, dtype)
    finite = [p for p in psnr if p is not None and math.isfinite(p)]
    return BaselineResult(
        "jpeg2000", size, 8.0 * size / (height * width), psnr, min(finite) if finite else None
    )
