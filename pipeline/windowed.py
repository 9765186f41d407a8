"""Images too large to decode whole within ``preprocess.max_worker_memory``.

Before an image is decoded its header gives its size, bands and data type, and from them the
memory a whole decode takes (measured per pixel: see :func:`decode_bytes`). Rasters
(GeoTIFF, JPEG2000: anything GDAL reads by blocks) over the budget are cut into the train
tiles by windowed reads, with the stretch computed from a decimated read (at most
``MAX_STAT_PIXELS`` per band), so memory is bounded by a tile, not by the image; a tile
that GDAL reports entirely nodata is skipped from the mask before its pixels are read. A
format without random access (PNG, JPEG, WebP, ...) over the budget, or a raster kept whole
(val/test splits), is refused with the reason, never decoded.
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

__all__ = ["ImageHeader", "RasterInfo", "decode_bytes", "raster_tiles", "read_header"]


@dataclass
class ImageHeader:
    """What the header says: size, bands read, their item size, and whether GDAL can read
    windows of it."""

    width: int
    height: int
    bands: int  # every band of the file (Pillow decodes them all)
    read_bands: int  # the bands a decode reads (RGB or gray, and alpha)
    itemsize: int
    windowed: bool


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
            return ImageHeader(im.width, im.height, bands, bands, size, False)
    except Exception as exc:  # Pillow raises many types for a bad file; decode reports it
        raise DecodeError(f"unreadable image ({type(exc).__name__})") from None


def raster_tiles(
    source: bytes | Path | str,
    *,
    layout: str,
    tile: int,
    stride: int,
    rgb_bands: Sequence[int] | None,
    percentiles: Sequence[float],
) -> tuple[RasterInfo, Iterator[tuple[int, int, np.ndarray, np.ndarray | None]]]:
    """The raster's metadata, and its tiles ``(x, y, rgb uint8 (h, w, 3), valid or None)``
    read one window at a time (a tile entirely masked by GDAL comes with an all-False
    ``valid`` and zero pixels, unread)."""
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
