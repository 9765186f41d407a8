"""Decoding any image member to 8-bit RGB, with its validity mask and what was converted.

The codec trains on 8-bit RGB. Archives hold more: grayscale and SAR (1 band), RGBA and
palette PNGs, 16-bit Landsat/Gaofen GeoTIFFs with 4 (B,G,R,NIR) or 10 bands, nodata borders.
Each is mapped to RGB by one rule, and the rule applied is returned so that every sample
records how it was made:

* bands: ``rgb_bands`` if configured; else the raster's colour interpretation when it names
  red/green/blue; else 1-2 bands -> grayscale replicated; 3 -> as stored; 4+ -> bands 3,2,1
  for Gaofen (B,G,R,NIR order) and 1,2,3 otherwise;
* alpha, the raster's nodata mask and non-finite values -> the validity mask;
* anything but uint8 -> the per-image percentile stretch of :mod:`pipeline.stretch`.

PNG/JPEG/BMP/WebP go through Pillow (fast, every PNG mode); TIFF/JP2 through rasterio/GDAL
(any band count and data type, nodata, georeferencing).
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pipeline.archives import RASTER_SUFFIXES
from pipeline.stretch import percentile_stretch

__all__ = [
    "DecodeError",
    "RGBImage",
    "choose_bands",
    "decode_image",
    "open_raster",
    "pil_pixel_limit",
]

_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


class DecodeError(ValueError):
    """An image member that cannot be turned into RGB; the message says why."""


@dataclass
class RGBImage:
    """An (H, W, 3) uint8 image, its validity mask (None: all valid) and its provenance."""

    rgb: np.ndarray
    valid: np.ndarray | None
    bands: int
    dtype: str
    conversions: list[str] = field(default_factory=list)
    stretch: dict[str, Any] | None = None
    geo: dict[str, Any] | None = None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def choose_bands(
    interp: Sequence[str], layout: str, rgb_bands: Sequence[int] | None = None
) -> tuple[list[int], int | None, str | None]:
    """Pick the 0-based bands read as RGB (or one gray band) from colour interpretations.

    Returns ``(bands, alpha band or None, note or None)``; the note describes a conversion.
    """
    count = len(interp)
    alpha = interp.index("alpha") if "alpha" in interp else None
    colour = [i for i in range(count) if i != alpha]
    if rgb_bands is not None and max(rgb_bands) <= count:
        bands = [b - 1 for b in rgb_bands]
        return bands, alpha, f"bands {','.join(map(str, rgb_bands))} of {count} as RGB"
    if all(c in interp for c in ("red", "green", "blue")):
        bands = [interp.index(c) for c in ("red", "green", "blue")]
        return bands, alpha, None if bands == [0, 1, 2] else "bands reordered to RGB"
    if not colour:
        raise DecodeError("the image has only an alpha band")
    if len(colour) <= 2:
        return [colour[0]], alpha, "grayscale to RGB"
    if len(colour) == 3:
        return colour, alpha, None
    if layout == "gaofen":
        return [colour[2], colour[1], colour[0]], alpha, f"bands 3,2,1 (B,G,R,NIR) of {count}"
    return colour[:3], alpha, f"bands 1,2,3 of {count} as RGB"


@contextlib.contextmanager
def pil_pixel_limit() -> Iterator[None]:
    from PIL import Image

    # Pillow refuses > 179 Mpx as a decompression bomb; DOTA-v2 has 20000² scenes. The size is
    # checked against max_image_pixels before decoding instead.
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


_PIL_INTERP = {
    "L": ["gray"],
    "LA": ["gray", "alpha"],
    "RGB": ["red", "green", "blue"],
    "RGBA": ["red", "green", "blue", "alpha"],
}


def _read_pil(source: bytes | Path, max_pixels: int) -> tuple[np.ndarray, list[str], list[str]]:
    """(H, W, C) array, colour interpretations, conversion notes."""
    from PIL import Image

    notes: list[str] = []
    with pil_pixel_limit():
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
                im: Image.Image = opened
                w, h = im.size
                if w * h > max_pixels:
                    raise DecodeError(f"{w}x{h} exceeds max_image_pixels={max_pixels}")
                frames = int(getattr(im, "n_frames", 1))
                if frames > 1:
                    notes.append(f"first frame of {frames}")
                im.load()
                mode = im.mode
                if mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                    notes.append("palette to RGB")
                elif mode == "PA":
                    im = im.convert("RGBA")
                    notes.append("palette to RGB")
                elif mode == "1":
                    im = im.convert("L")
                elif mode in ("La", "RGBa"):
                    im = im.convert(mode.upper())
                elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
                    im = im.convert("RGB")
                    notes.append(f"{mode} to RGB")
                arr = np.asarray(im)
                interp = _PIL_INTERP.get(im.mode, ["gray"])  # I;16, I, F: one band
        except DecodeError:
            raise
        except Exception as exc:  # Pillow raises many types for bad data
            # Messages like "cannot identify image file <_io.BytesIO object at 0x7f..>" would
            # make the manifest differ between runs.
            msg = _OBJECT_REPR.sub("the data", str(exc))
            raise DecodeError(f"unreadable image ({type(exc).__name__}: {msg})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr, interp, notes


def open_raster(stack: contextlib.ExitStack, source: bytes | Path | str) -> Any:
    """Open a raster member (its bytes, or a path GDAL opens) inside ``stack``, with GDAL's
    "not georeferenced" warning silenced for as long as the stack is open."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    if isinstance(source, bytes):
        return stack.enter_context(stack.enter_context(MemoryFile(source)).open())
    return stack.enter_context(rasterio.open(source))


def _read_raster(
    source: bytes | Path, layout: str, rgb_bands: Sequence[int] | None, max_pixels: int
) -> tuple[np.ndarray, np.ndarray | None, int, str | None, dict[str, Any] | None]:
    """Selected bands (H, W, 1|3), valid mask, band count, note, georeferencing."""
    from rasterio.enums import MaskFlags
    from rasterio.errors import RasterioError

    try:
        with contextlib.ExitStack() as stack:
            ds = open_raster(stack, source)
            if ds.width * ds.height > max_pixels:
                raise DecodeError(f"{ds.width}x{ds.height} exceeds max_image_pixels={max_pixels}")
            interp = [c.name for c in ds.colorinterp]
            bands, alpha, note = choose_bands(interp, layout, rgb_bands)
            # Read only the bands used: a 10-band scene costs 3 bands of memory.
            data = ds.read([b + 1 for b in bands])
            valid = None
            if alpha is not None:
                valid = ds.read(alpha + 1) > 0
                note = "; ".join(filter(None, [note, "alpha band as validity mask"]))
            elif any(MaskFlags.all_valid not in flags for flags in ds.mask_flag_enums):
                valid = ds.dataset_mask() > 0
            geo = None
            if ds.crs is not None:
                geo = {"crs": ds.crs.to_string(), "transform": list(ds.transform)[:6]}
            count = ds.count
    except DecodeError:
        raise
    except (RasterioError, OSError, ValueError) as exc:
        raise DecodeError(f"unreadable raster ({type(exc).__name__}: {exc})") from None
    return np.moveaxis(data, 0, -1), valid, count, note, geo


def decode_image(
    source: bytes | Path,
    name: str,
    *,
    layout: str,
    rgb_bands: Sequence[int] | None = None,
    percentiles: Sequence[float] = (2.0, 98.0),
    max_pixels: int = 2**30,
) -> RGBImage:
    """Decode one member (its bytes, or its path on disk) to :class:`RGBImage`.

    Raises:
        DecodeError: unreadable, truncated, too large, or without any valid pixel.
    """
    notes: list[str] = []
    geo = None
    if PurePosixPath(name).suffix.lower() in RASTER_SUFFIXES:
        data, valid, count, note, geo = _read_raster(source, layout, rgb_bands, max_pixels)
        if note:
            notes.append(note)
    else:
        arr, interp, notes = _read_pil(source, max_pixels)
        count = arr.shape[-1]
        bands, alpha, note = choose_bands(interp, layout, rgb_bands)
        if note:
            notes.append(note)
        valid = arr[..., alpha] > 0 if alpha is not None else None
        if alpha is not None:
            notes.append("alpha band as validity mask")
        data = arr[..., bands]
    dtype = str(data.dtype)
    if data.dtype.kind == "f":
        finite = np.isfinite(data).all(axis=-1)
        if not finite.all():
            valid = finite if valid is None else valid & finite
    if valid is not None:
        if not valid.any():
            raise DecodeError("no valid pixel (all nodata / transparent)")
        if valid.all():
            valid = None
    stretch = None
    if data.dtype == np.uint8:
        rgb = data
    elif data.dtype == np.bool_:
        rgb = data.astype(np.uint8) * 255
        notes.append("bilevel to 8-bit")
    else:
        try:
            rgb, stretch = percentile_stretch(data, valid, percentiles)
        except ValueError as exc:
            raise DecodeError(str(exc)) from None
        notes.append(f"{dtype} to uint8 by {percentiles[0]:g}-{percentiles[1]:g}% stretch")
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    rgb = np.ascontiguousarray(rgb)
    return RGBImage(rgb, valid, count, dtype, notes, stretch, geo)
