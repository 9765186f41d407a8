"""Bands into the model's 3-channel groups, and any bit depth into its [0, 1] range.

Band groups. The model codes 3-channel images. Bands whose colour interpretation is red,
green, blue form the first group in that order (an RGB-trained codec sees RGB); the other
bands follow in file order, three per group. A last group of one band is coded as grey
(b, b, b) and one of two as (a, b, b): replicated channels are what an RGB codec codes most
cheaply (no chroma), and the decoder averages the channels of a band, which also averages
their coding noise. Alpha bands are not coded; they are stored losslessly.

Bit depth. The codec is not 8-bit internally: it maps floats in [0, 1] to floats in [0, 1].
Every band is mapped there linearly, ``v = (x - lo) / (hi - lo)``, and back after decoding,
with ``lo``/``hi`` the band's valid minimum and maximum over the scene (``scene-linear``) or
over each tile (``tile-linear``), stored in the container. Nothing is clipped and nothing is
rounded to 8 bits on the way in, so 16-bit and float data keep their whole range and their
precision is bounded by the codec's distortion alone (which at useful rates is far above an
8-bit step). 8-bit data use ``x / 255`` as is, whatever the mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "BandRange",
    "channels_of",
    "default_groups",
    "fill_invalid",
    "from_unit",
    "nudge_off_nodata",
    "to_dtype",
    "to_unit",
    "validate_groups",
]

RGB = ("red", "green", "blue")


def default_groups(colorinterp: Sequence[str]) -> tuple[list[list[int]], int | None]:
    """``(groups, alpha_band)`` for bands with these colour interpretations (1-based)."""
    names = [c.lower() for c in colorinterp]
    alpha = [i + 1 for i, c in enumerate(names) if c == "alpha"]
    if len(alpha) > 1:
        raise ValueError(f"bands {alpha} are all marked alpha; at most one alpha band is supported")
    rest = [i + 1 for i, c in enumerate(names) if c != "alpha"]
    groups: list[list[int]] = []
    if all(c in names for c in RGB):
        rgb = [names.index(c) + 1 for c in RGB]
        groups.append(rgb)
        rest = [b for b in rest if b not in rgb]
    groups += [rest[i : i + 3] for i in range(0, len(rest), 3)]
    return groups, (alpha[0] if alpha else None)


def validate_groups(groups: Sequence[Sequence[int]], count: int, alpha: int | None) -> None:
    """Raise ``ValueError`` unless ``groups`` code every non-alpha band of ``count``."""
    if not groups:
        raise ValueError("no band groups: the scene has no band to code")
    for g in groups:
        if not 1 <= len(g) <= 3:
            raise ValueError(f"a band group holds 1 to 3 bands, got {list(g)}")
        bad = [b for b in g if not 1 <= b <= count or b == alpha]
        if bad:
            what = "the alpha band" if alpha in bad else f"not a band of this {count}-band scene"
            raise ValueError(f"band group {list(g)}: band {bad[0]} is {what}")
    missing = sorted(set(range(1, count + 1)) - {alpha} - {b for g in groups for b in g})
    if missing:
        raise ValueError(f"bands {missing} are in no band group; every band must be coded")


def channels_of(group: Sequence[int]) -> list[int]:
    """The 3 bands a group's channels carry: (b,) -> (b, b, b); (a, b) -> (a, b, b)."""
    g = list(group)
    return g + [g[-1]] * (3 - len(g))


class BandRange:
    """Streaming per-band minimum and maximum over valid pixels."""

    def __init__(self, bands: int) -> None:
        self.lo = np.full(bands, np.inf)
        self.hi = np.full(bands, -np.inf)

    def update(self, data: np.ndarray, valid: np.ndarray) -> None:
        """``data`` (C, h, w), ``valid`` (C, h, w) bool."""
        for c in range(data.shape[0]):
            v = data[c][valid[c]]
            if v.size:
                self.lo[c] = min(self.lo[c], float(v.min()))
                self.hi[c] = max(self.hi[c], float(v.max()))

    def result(self) -> tuple[list[float], list[float]]:
        """(lo, hi) per band; a band without valid pixels gets (0, 0)."""
        empty = ~np.isfinite(self.lo)
        lo = np.where(empty, 0.0, self.lo)
        hi = np.where(empty, 0.0, self.hi)
        return lo.tolist(), hi.tolist()


def to_unit(data: np.ndarray, lo: Sequence[float], hi: Sequence[float]) -> np.ndarray:
    """(C, h, w) native values -> float32 in [0, 1] (a band with hi == lo -> 0)."""
    out = data.astype(np.float32, copy=True)
    for c in range(out.shape[0]):
        span = float(hi[c]) - float(lo[c])
        out[c] -= np.float32(lo[c])
        out[c] *= np.float32(1.0 / span if span > 0 else 0.0)
    np.clip(out, 0.0, 1.0, out=out)  # only invalid pixels (outside the valid range) move
    return out


def from_unit(v: np.ndarray, lo: Sequence[float], hi: Sequence[float]) -> np.ndarray:
    """The inverse of :func:`to_unit`, float32."""
    out = np.empty(v.shape, dtype=np.float32)
    for c in range(v.shape[0]):
        out[c] = v[c] * np.float32(float(hi[c]) - float(lo[c])) + np.float32(lo[c])
    return out


def fill_invalid(v: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Set invalid pixels of each (C, h, w) band to the mean of its valid ones, in place.

    Their values are restored from the masks, not from the codec; a flat fill costs the
    codec almost nothing where a nodata border would cost an edge.
    """
    for c in range(v.shape[0]):
        ok = valid[c]
        if ok.all():
            continue
        v[c][~ok] = v[c][ok].mean() if ok.any() else 0.5
    return v


def to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 -> ``dtype``: rounded and clipped to its range for integer types."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return x.astype(dt)
    info = np.iinfo(dt)
    return np.clip(np.rint(x), info.min, info.max).astype(dt)


def nudge_off_nodata(x: np.ndarray, valid: np.ndarray, nodata: float | None) -> None:
    """Move valid pixels that decoded exactly onto ``nodata`` by one step, in place.

    Otherwise GDAL would read them as missing: the mask would not survive the round trip.
    """
    if nodata is None or np.isnan(nodata):
        return
    hit = valid & (x == nodata)
    if not hit.any():
        return
    if x.dtype.kind == "f":
        step = np.nextafter(x.dtype.type(nodata), x.dtype.type(np.inf))
        x[hit] = step
        return
    info = np.iinfo(x.dtype)
    x[hit] = nodata + 1 if nodata < info.max else nodata - 1
