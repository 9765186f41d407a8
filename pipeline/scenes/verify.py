"""Decoded vs source, band by band, in the native range: squared errors and PSNR.

The decoder's output (after rounding to the source's type and restoring the masks, i.e.
exactly what the GeoTIFF will hold) is compared with the source over each band's valid
pixels. Sums over disjoint windows add up, so a scene is verified in parallel pieces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio.windows import Window

from pipeline.scenes.mosaic import SceneDecoder
from pipeline.scenes.source import gdal_cache, open_scene, read_tile

__all__ = ["BandErrors", "psnr_db", "region_psnr", "seam_mask", "seam_psnr", "window_errors"]


@dataclass
class BandErrors:
    """Per band: sum of squared errors, valid pixel count, valid min and max of the source."""

    sse: list[float]
    count: list[int]
    lo: list[float]
    hi: list[float]
    max_abs: list[float] = field(default_factory=list)

    @classmethod
    def empty(cls, bands: int) -> BandErrors:
        return cls(
            [0.0] * bands, [0] * bands, [math.inf] * bands, [-math.inf] * bands, [0.0] * bands
        )

    def merge(self, other: BandErrors) -> BandErrors:
        return BandErrors(
            [a + b for a, b in zip(self.sse, other.sse, strict=True)],
            [a + b for a, b in zip(self.count, other.count, strict=True)],
            [min(a, b) for a, b in zip(self.lo, other.lo, strict=True)],
            [max(a, b) for a, b in zip(self.hi, other.hi, strict=True)],
            [max(a, b) for a, b in zip(self.max_abs, other.max_abs, strict=True)],
        )

    def to_dict(self) -> dict[str, Any]:
        return {"sse": self.sse, "count": self.count, "lo": self.lo, "hi": self.hi,
                "max_abs": self.max_abs}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BandErrors:
        return cls(d["sse"], d["count"], d["lo"], d["hi"], d["max_abs"])


def psnr_db(errors: BandErrors, dtype: str) -> tuple[list[float | None], list[float]]:
    """(PSNR per band in dB, the peak used). None where a band has no valid pixel.

    The peak is 255 for 8-bit data and otherwise the band's valid range in the scene
    (max - min): a 12-bit sensor stored in uint16 is judged on its own range, not on 65535.
    """
    out: list[float | None] = []
    peaks = []
    for sse, n, lo, hi in zip(errors.sse, errors.count, errors.lo, errors.hi, strict=True):
        peak = 255.0 if dtype == "uint8" else (hi - lo if n else 0.0)
        peaks.append(peak)
        if n == 0:
            out.append(None)
        elif sse == 0:
            out.append(math.inf)
        elif peak <= 0:
            out.append(None)
        else:
            out.append(10.0 * math.log10(peak * peak / (sse / n)))
    return out, peaks


def window_errors(decoder: SceneDecoder, source: str, window: Window) -> BandErrors:
    """Errors of every band of ``window`` of the decoded scene against ``source``."""
    header = decoder.header
    errors = BandErrors.empty(header.count)
    bands = header.coded_bands
    with gdal_cache(header.width, header.count, header.dtype), open_scene(source) as ds:
        for block in decoder.blocks(window):
            src = read_tile(ds, block.window, header)
            for b in range(1, header.count + 1):
                if b in bands:
                    ref = src.data[bands.index(b)]
                    ok = src.valid[bands.index(b)]
                else:  # the alpha band: stored losslessly, compared everywhere
                    ref = ds.read(b, window=block.window)
                    ok = np.ones(ref.shape, dtype=bool)
                got = block.data[b - 1]
                if not ok.any():
                    continue
                r = ref[ok].astype(np.float64)
                d = got[ok].astype(np.float64) - r
                i = b - 1
                errors.sse[i] += float(np.dot(d, d))
                errors.count[i] += int(d.size)
                errors.lo[i] = min(errors.lo[i], float(r.min()))
                errors.hi[i] = max(errors.hi[i], float(r.max()))
                errors.max_abs[i] = max(errors.max_abs[i], float(np.abs(d).max()))
    return errors


def seam_mask(grid: Any, band: int = 8) -> np.ndarray:
    """(H, W) bool: the pixels within ``band`` px around the tiles' seams.

    Seams are where the output switches from one tile to the next: the tiles' ownership
    boundaries (the midlines of the overlaps; the tile edges without overlap).
    """
    near = np.zeros((grid.height, grid.width), dtype=bool)
    half = band // 2
    for k in range(1, grid.y.count):
        line = grid.y.own(k)[0]
        near[max(0, line - half) : line + half, :] = True
    for k in range(1, grid.x.count):
        line = grid.x.own(k)[0]
        near[:, max(0, line - half) : line + half] = True
    return near


def region_psnr(source: np.ndarray, decoded: np.ndarray, region: np.ndarray, peak: float) -> float:
    """PSNR over the (H, W) ``region`` of (C, H, W) arrays, all bands together."""
    if not region.any():
        return math.nan
    err = decoded[:, region].astype(np.float64) - source[:, region].astype(np.float64)
    mse = float(np.mean(err * err))
    return 10 * math.log10(peak * peak / mse) if mse > 0 else math.inf


def seam_psnr(
    source: np.ndarray,
    decoded: np.ndarray,
    valid: np.ndarray,
    grid: Any,
    peak: float = 255.0,
    band: int = 8,
) -> tuple[float, float]:
    """(PSNR within ``band`` px around the seams, PSNR elsewhere) over ``valid`` pixels.

    Arrays are (C, H, W) over the whole scene, ``valid`` (H, W).
    """
    near = seam_mask(grid, band)
    return (
        region_psnr(source, decoded, near & valid, peak),
        region_psnr(source, decoded, ~near & valid, peak),
    )
