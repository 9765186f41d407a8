"""Reproducible percentile stretch of high-bit-depth imagery to 8 bits.

Gaofen and Landsat deliver 10-16-bit reflectance whose useful range is a small part of the
container's; a linear map of each band's ``[p_lo, p_hi]`` percentiles onto ``[0, 255]`` is the
standard visual stretch. The percentiles are computed per image over valid pixels only, and
returned, so every tile carries the exact mapping that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["MAX_STAT_PIXELS", "apply_stretch", "percentile_stretch", "stretch_params"]

# Above this many valid pixels per band the percentiles come from a regular subsample (every
# k-th valid pixel): a 100-Mpx scene then costs ~1 s instead of ~20 s, and stays reproducible.
MAX_STAT_PIXELS = 1 << 24


def stretch_params(
    bands: np.ndarray,
    valid: np.ndarray | None = None,
    percentiles: Sequence[float] = (2.0, 98.0),
) -> dict[str, Any]:
    """Per-band percentiles of an (H, W, C) array over ``valid`` (H, W) pixels.

    Returns a JSON-ready dict ``{"method", "percentiles", "low", "high", "sample_step"}``.
    """
    if bands.ndim != 3:
        raise ValueError(f"expected (H, W, C) bands, got shape {bands.shape}")
    lo_p, hi_p = (float(p) for p in percentiles)
    n_valid = int(bands.shape[0] * bands.shape[1] if valid is None else np.count_nonzero(valid))
    if n_valid == 0:
        raise ValueError("no valid pixels to compute a stretch from")
    step = max(1, -(-n_valid // MAX_STAT_PIXELS))
    low, high = [], []
    for c in range(bands.shape[2]):
        band = bands[..., c]
        values = band.reshape(-1) if valid is None else band[valid]
        values = values[::step]
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
            if values.size == 0:
                raise ValueError("no finite pixels to compute a stretch from")
        lo, hi = np.percentile(values, [lo_p, hi_p])
        low.append(float(lo))
        high.append(float(hi))
    return {
        "method": "percentile",
        "percentiles": [lo_p, hi_p],
        "low": low,
        "high": high,
        "sample_step": step,
    }


def apply_stretch(
    bands: np.ndarray, params: dict[str, Any], valid: np.ndarray | None = None
) -> np.ndarray:
    """Map each band's ``[low, high]`` linearly onto ``[0, 255]`` (clipped, rounded) as uint8.

    Invalid pixels become 0. A band with ``high == low`` maps to 0 below/at ``low``, 255 above.
    """
    out = np.empty(bands.shape, dtype=np.uint8)
    for c, (lo, hi) in enumerate(zip(params["low"], params["high"], strict=True)):
        band = bands[..., c].astype(np.float32)
        if hi <= lo:
            out[..., c] = np.where(band > lo, 255, 0)
            continue
        band -= np.float32(lo)
        band *= np.float32(255.0 / (hi - lo))
        # NaN (float rasters' nodata) would cast to an arbitrary integer.
        np.nan_to_num(band, copy=False, nan=0.0)
        np.clip(band, 0.0, 255.0, out=band)
        np.rint(band, out=band)
        out[..., c] = band
    if valid is not None:
        out[~valid] = 0
    return out


def percentile_stretch(
    bands: np.ndarray,
    valid: np.ndarray | None = None,
    percentiles: Sequence[float] = (2.0, 98.0),
) -> tuple[np.ndarray, dict[str, Any]]:
    """Stretch (H, W, C) bands of any dtype to uint8; returns the image and its parameters."""
    params = stretch_params(bands, valid, percentiles)
    return apply_stretch(bands, params, valid), params
