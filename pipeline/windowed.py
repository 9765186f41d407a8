"""Images read by windows instead of whole, so that a worker's memory does not grow with them.

Before an image is decoded its header gives its size, bands and data type, and from them the
memory a whole decode takes (measured per pixel: see :func:`decode_bytes`). Train-split
images over ``preprocess.window_reads_above`` (or the worker budget) are cut into their train
tiles without a whole decode: rasters GDAL reads by blocks (GeoTIFF, JPEG2000) one window at
a time, with the stretch computed from a decimated read (at most ``MAX_STAT_PIXELS`` per band)
and tiles that GDAL reports entirely nodata skipped from the mask before their pixels are
read; 8-bit PNG, which decodes line by line, through GDAL in row strips, each line decoded
once. Memory is then bounded by a strip or a tile, not by the image. Other formats (palette
or 16-bit PNG, JPEG, WebP, ...) over the budget, and images kept whole (val/test splits),
are refused with the reason, never decoded.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pipeline.archives import RASTER_SUFFIXES
from pipeline.decode import DecodeError, choose_bands, open_raster, pil_pixel_limit
from pipeline.stretch import MAX_STAT_PIXELS, apply_stretch, stretch_params
from pipeline.tiling import tile_grid

__all__ = [
    "ImageHeader",
    "RasterInfo",
    "decode_bytes",
    "raster_tiles",
    "read_header",
    "strips_readable",
]

# Formats GDAL decodes line by line: read in row strips (top to bottom, once), never by
# windows, which would restart the decoder at every tile of a row. Not JPEG: GDAL's libjpeg
# upsamples chroma otherwise than Pillow (pixels up to 24 levels apart on DOTA tiles), so a
# large JPEG would give other samples than a small one.
STRIP_SUFFIXES = frozenset({".png"})
# Pillow modes whose pixels GDAL's PNG driver returns unchanged (palette and 16-bit images
# are converted by Pillow's whole-image path only).
_STRIP_MODES = frozenset({"L", "LA", "RGB", "RGBA"})


@dataclass
class ImageHeader:
    """What the header says: size, bands read, their item size, and whether GDAL can read
    windows of it (``strips``: Pillow sees an 8-bit PNG GDAL may read in row strips, top to
    bottom; :func:`strips_readable` confirms it where it matters)."""

    width: int
    height: int
    bands: int  # every band of the file (Pillow decodes them all)
    read_bands: int  # the bands a decode reads (RGB or gray, and alpha)
    itemsize: int
    windowed: bool
    strips: bool = False


@dataclass
class RasterInfo:
    """The image-level metadata of a windowed raster (what :class:`RGBImage` holds without
    the pixels)."""

    width: int
    height: int
    bands: int
    dtype: str
    conversions: list[str] = field(default_factory=list)
    stretch: dict[str, Any] | None = None
    geo: dict[str, Any] | None = None


def decode_bytes(h: ImageHeader) -> int:
    """Peak memory of decoding the image whole (pipeline.decode), from its header.

    Measured on generated 64-Mpx images (peak RSS of decode_image): a 4-band uint16 GeoTIFF
    took 23 bytes a pixel (3 bands read, validity mask, float32 stretch, the RGB result), an
    RGB PNG 10 (Pillow's image, its NumPy copy, the result); the model is that per band (an
    8-bit raster has no stretch).
    """
    px = h.width * h.height
    if h.windowed:
        stretch = 0 if h.itemsize == 1 else 4
        return px * (h.read_bands * (h.itemsize + stretch) + 5)
    return px * (h.bands * h.itemsize * 3 + 1)


def read_header(source: bytes | Path | str, name: str) -> ImageHeader:
    """The header of an image member (its bytes, or a path GDAL/Pillow opens)."""
    if PurePosixPath(name).suffix.lower() in RASTER_SUFFIXES:
        from rasterio.errors import RasterioError

        try:
            with contextlib.ExitStack() as stack:
                ds = open_raster(stack, source)
                interp = [c.name for c in ds.colorinterp]
                alpha = 1 if "alpha" in interp else 0
                read = min(3, ds.count - alpha) + alpha
                size = int(np.dtype(ds.dtypes[0]).itemsize)
                return ImageHeader(ds.width, ds.height, ds.count, read, size, True)
        except (RasterioError, OSError, ValueError) as exc:
            raise DecodeError(f"unreadable raster ({type(exc).__name__}: {exc})") from None
    from PIL import Image

    try:
        with (
            pil_pixel_limit(),
            Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im,
        ):
            bands = len(im.getbands())
            size = 2 if im.mode.startswith(("I;16", "I")) else 4 if im.mode == "F" else 1
            strips = (
                PurePosixPath(name).suffix.lower() in STRIP_SUFFIXES
                and im.mode in _STRIP_MODES
                and int(getattr(im, "n_frames", 1)) == 1
            )
            return ImageHeader(im.width, im.height, bands, bands, size, False, strips)
    except Exception as exc:  # Pillow raises many types for a bad file; decode reports it
        raise DecodeError(f"unreadable image ({type(exc).__name__})") from None


def strips_readable(source: bytes | Path | str, bands: int) -> bool:
    """Whether GDAL opens the image with Pillow's bands, 8 bits each (a 48-bit PNG is 8-bit
    RGB to Pillow, 16-bit to GDAL: such an image keeps Pillow's whole-image path). Asked only
    of images too large to decode whole: opening GDAL costs a copy of the file."""
    from rasterio.errors import RasterioError

    try:
        with contextlib.ExitStack() as stack:
            ds = open_raster(stack, source)
            return bool(ds.count == bands and set(ds.dtypes) == {"uint8"})
    except (RasterioError, OSError, ValueError):
        return False


def raster_tiles(
    source: bytes | Path | str,
    *,
    layout: str,
    tile: int,
    stride: int,
    rgb_bands: Sequence[int] | None,
    percentiles: Sequence[float],
    strips: bool = False,
) -> tuple[RasterInfo, Iterator[tuple[int, int, np.ndarray, np.ndarray | None]]]:
    """The raster's metadata, and its tiles ``(x, y, rgb uint8 (h, w, 3), valid or None)``
    read one window at a time (a tile entirely masked by GDAL comes with an all-False
    ``valid`` and zero pixels, unread), or with ``strips`` from full-width row strips (8-bit
    PNG: see :data:`STRIP_SUFFIXES`)."""
    from rasterio.enums import MaskFlags, Resampling
    from rasterio.windows import Window

    from pipeline.scenes.source import gdal_cache  # rasterio: not at import (fast --help)

    stack = contextlib.ExitStack()
    ds = open_raster(stack, source)
    interp = [c.name for c in ds.colorinterp]
    bands, alpha, note = choose_bands(interp, layout, rgb_bands)
    indexes = [b + 1 for b in bands]
    masked = any(MaskFlags.all_valid not in f for f in ds.mask_flag_enums)
    dtype = np.dtype(ds.dtypes[bands[0]])
    # GDAL's block cache would otherwise grow to 5 % of the machine's memory with the scene
    stack.enter_context(gdal_cache(ds.width, len(indexes) + 1, str(dtype)))
    info = RasterInfo(ds.width, ds.height, ds.count, str(dtype))
    if note:
        info.conversions.append(note)
    if ds.crs is not None:
        info.geo = {"crs": ds.crs.to_string(), "transform": list(ds.transform)[:6]}

    def valid_of(window: Window | None, out_shape: tuple[int, int] | None) -> np.ndarray | None:
        kw: dict[str, Any] = {"window": window}
        if out_shape is not None:
            kw.update(out_shape=out_shape, resampling=Resampling.nearest)
        if alpha is not None:
            return ds.read(alpha + 1, **kw) > 0
        if masked:
            return ds.dataset_mask(**kw) > 0
        return None

    if dtype != np.uint8:
        # the stretch from a regular decimation: at most MAX_STAT_PIXELS a band are read
        f = max(1, math.ceil(math.sqrt(ds.width * ds.height / MAX_STAT_PIXELS)))
        shape = (max(1, ds.height // f), max(1, ds.width // f))
        sample = np.moveaxis(
            ds.read(indexes, out_shape=(len(indexes), *shape), resampling=Resampling.nearest),
            0, -1,
        )  # fmt: skip
        try:
            info.stretch = stretch_params(sample, valid_of(None, shape), percentiles)
        except ValueError as exc:
            stack.close()
            raise DecodeError(str(exc)) from None
        info.stretch["decimation"] = f
        info.conversions.append(
            f"{dtype} to uint8 by {percentiles[0]:g}-{percentiles[1]:g}% stretch"
        )

    def strip_tiles() -> Iterator[tuple[int, int, np.ndarray, np.ndarray | None]]:
        # Rows [top, top + len(rows)) are held; each strip reads only the rows below them,
        # so every line is decoded once even when tiles overlap (stride < tile).
        read = indexes + ([alpha + 1] if alpha is not None else [])
        rows = np.zeros((0, ds.width, len(read)), np.uint8)
        top = 0
        grid = tile_grid(ds.height, ds.width, tile, stride)
        with stack:
            for y in sorted({y for _, y in grid}):
                end = min(y + tile, ds.height)
                rows, top = rows[y - top :], y  # y only grows
                if top + len(rows) < end:
                    window = Window(0, top + len(rows), ds.width, end - top - len(rows))
                    new = np.moveaxis(ds.read(read, window=window), 0, -1)
                    rows = np.concatenate([rows, new]) if len(rows) else new
                strip = rows[y - top : end - top]
                for x, ty in grid:
                    if ty != y:
                        continue
                    cut = strip[:, x : x + tile]
                    valid = cut[..., -1] > 0 if alpha is not None else None
                    rgb = cut[..., : len(indexes)]
                    if rgb.shape[-1] == 1:
                        rgb = np.repeat(rgb, 3, axis=-1)
                    yield x, y, np.ascontiguousarray(rgb), valid

    if strips:
        if alpha is not None:
            info.conversions.append("alpha band as validity mask")
        return info, strip_tiles()

    def tiles() -> Iterator[tuple[int, int, np.ndarray, np.ndarray | None]]:
        with stack:
            for x, y in tile_grid(ds.height, ds.width, tile, stride):
                window = Window(x, y, min(tile, ds.width - x), min(tile, ds.height - y))
                h, w = int(window.height), int(window.width)
                valid = valid_of(window, None)
                if valid is not None and not valid.any():
                    yield x, y, np.zeros((h, w, 3), np.uint8), valid
                    continue
                data = np.moveaxis(ds.read(indexes, window=window), 0, -1)
                if data.dtype.kind == "f":
                    finite = np.isfinite(data).all(axis=-1)
                    if not finite.all():
                        valid = finite if valid is None else valid & finite
                stretch = info.stretch
                rgb = data if stretch is None else apply_stretch(data, stretch, valid)
                if rgb.shape[-1] == 1:
                    rgb = np.repeat(rgb, 3, axis=-1)
                yield x, y, np.ascontiguousarray(rgb), valid

    return info, tiles()
