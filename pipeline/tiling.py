"""The tile grid over an image and the rule that skips useless tiles."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

__all__ = ["pad_to", "skip_reason", "tile_grid", "tile_origins"]


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Tile start offsets along one axis covering ``[0, length)`` to its end.

    Offsets step by ``stride``; when the last tile would stop short of the edge, one more tile
    is shifted in so that it ends exactly at the edge (overlapping its neighbour) instead of
    dropping the remainder. An axis shorter than a tile gets the single offset 0 (the caller
    pads or skips).
    """
    if tile < 1 or stride < 1:
        raise ValueError(f"tile and stride must be positive, got {tile}, {stride}")
    if length <= tile:
        return [0]
    origins = list(range(0, length - tile + 1, stride))
    if origins[-1] + tile < length:
        origins.append(length - tile)
    return origins


def tile_grid(height: int, width: int, tile: int, stride: int) -> list[tuple[int, int]]:
    """``(x, y)`` origins of the tiles covering a ``height`` x ``width`` image, row by row.

    (Arguments height first, as :func:`ltchm.codec.image.image_tiles` and array shapes.)
    """
    xs = tile_origins(width, tile, stride)
    ys = tile_origins(height, tile, stride)
    return [(x, y) for y in ys for x in xs]


def pad_to(
    image: np.ndarray, valid: np.ndarray | None, size: int, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Pad an (H, W, C) image on the bottom/right to at least ``size`` x ``size``.

    Returns the padded image and its validity mask, where padded pixels are False so a
    consumer can tell real pixels from filled ones.
    """
    h, w = image.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if valid is None:
        valid = np.ones((h, w), dtype=bool)
    if ph == 0 and pw == 0:
        return image, valid
    # numpy's symmetric/reflect modes handle pads wider than the image by repeating.
    padded = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode=cast(Any, mode))
    mask = np.pad(valid, ((0, ph), (0, pw)), mode="constant", constant_values=False)
    return padded, mask


def skip_reason(
    tile: np.ndarray,
    valid: np.ndarray | None,
    nodata_fraction: float,
    constant_std: float,
) -> str | None:
    """``"nodata"``, ``"constant"`` or None (keep) for one (h, w, 3) uint8 tile.

    A tile is skipped when at least ``nodata_fraction`` of its pixels are nodata (alpha 0,
    the raster's nodata value, or padding), or when every band's standard deviation over the
    tile is at most ``constant_std`` (uniform fill, black borders, saturated cloud).
    """
    if valid is not None and valid.size:
        missing = 1.0 - np.count_nonzero(valid) / valid.size
        if missing >= nodata_fraction:
            return "nodata"
    # Band by band: numpy reduces a strided single-band view faster than axis=0 over
    # interleaved (N, 3) pixels (benchmarks/RESULTS.md, "Implementation choices").
    if all(float(tile[..., c].std()) <= constant_std for c in range(tile.shape[-1])):
        return "constant"
    return None
