"""Reading and writing 8-bit RGB images as (3, H, W) float tensors in [0, 1]."""

from __future__ import annotations

from pathlib import Path
from typing import TypeAlias

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch import Tensor

from ltchm.atomic import atomic_path

# An 8-bit RGB image as arrays hold it: (H, W, 3) uint8.
Image8: TypeAlias = NDArray[np.uint8]

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "Image8",
    "ImageFormatError",
    "list_images",
    "read_image",
    "to_uint8",
    "write_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


class ImageFormatError(ValueError):
    """An image the 8-bit RGB codec cannot take as it is."""


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


# Pillow refuses larger images as decompression bombs (twice its MAX_IMAGE_PIXELS): the image
# codec's limit, checked by decode from a file's header too.
MAX_PIXELS = 2 * 89_478_485


def read_image(
    path: str | Path, drop_alpha: bool = False, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Read an 8-bit RGB image as a (3, H, W) float tensor in [0, 1].

    Args:
        path: PNG, JPEG, TIFF, BMP or WebP file.
        drop_alpha: accept RGBA by discarding the alpha band (otherwise an error).
        dtype: ``torch.uint8`` keeps the pixels as they are (a quarter of the memory of
            floats; :class:`~ltchm.codec.image.ImageCodec` converts tile by tile).

    Raises:
        ImageFormatError: the image is not 8-bit with 3 bands (grayscale, RGBA, 16-bit, ...);
            georeferenced multi-band rasters belong to ``ltchm compress-scenes``.
    """
    path = Path(path)
    img: Image.Image
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError:
        raise ImageFormatError(
            f"{path}: too large for the image codec (over {MAX_PIXELS / 1e6:.0f} Mpx); large "
            "rasters go through 'ltchm compress-scenes' (read by windows)"
        ) from None
    except Exception as exc:
        raise ImageFormatError(f"{path}: not a readable image ({exc})") from None
    frames = int(getattr(img, "n_frames", 1))
    if frames > 1:
        raise ImageFormatError(
            f"{path}: animated image of {frames} frames; the image codec codes one image. "
            "Extract the frame to code (e.g. as PNG) first."
        )
    bits = _bits_per_sample(img, path)
    if bits > 8:
        # Pillow reads 48-bit RGB TIFF/PNG as "RGB", keeping only the top 8 bits of each pixel
        raise ImageFormatError(
            f"{path}: {bits}-bit image; the image codec takes 8-bit RGB and would drop the low "
            f"{bits - 8} bits. Use 'ltchm compress-scenes', which keeps any bit depth."
        )
    mode = img.mode
    if mode == "RGBA" and drop_alpha:
        img = img.convert("RGB")
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        if img.mode == "RGBA":
            raise ImageFormatError(f"{path}: palette image with transparency; convert it to RGB")
    elif mode != "RGB":
        bands = len(img.getbands())
        raise ImageFormatError(
            f"{path}: {bands}-band image of mode {mode!r}; the image codec takes 8-bit RGB "
            "(3 bands). Convert it, or use 'ltchm compress-scenes', which maps any band count "
            "and bit depth."
        )
    arr = np.asarray(img, dtype=np.uint8)
    img.close()
    pixels = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    if dtype == torch.uint8:
        return pixels
    return pixels.to(dtype).div_(255.0)


_GEO_TAGS = (33550, 33922, 34264, 34735)  # GeoTIFF pixel scale, tie points, matrix, keys


def _bits_per_sample(img: Image.Image, path: Path) -> int:
    """The file's bits per sample where Pillow hides them (TIFF tags, the PNG header)."""
    if img.format == "TIFF":
        tag = getattr(img, "tag_v2", {}).get(258, 8)
        return max(tag) if isinstance(tag, tuple) else int(tag)
    if img.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(25)
        return header[24] if len(header) == 25 else 8
    return 16 if img.mode.startswith("I;16") else 8


def is_georeferenced(path: str | Path) -> bool:
    """True for a GeoTIFF or an image with a world file / GDAL sidecar beside it."""
    path = Path(path)
    sidecars = (".tfw", ".tifw", ".pgw", ".jgw", ".wld")
    if any(path.with_suffix(s).exists() for s in sidecars):
        return True
    if Path(f"{path}.aux.xml").exists():
        return True
    try:
        with Image.open(path) as img:
            return img.format == "TIFF" and any(t in img.tag_v2 for t in _GEO_TAGS)  # type: ignore[attr-defined]
    except Exception:
        return False


def to_uint8(x: Tensor) -> Image8:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounding to nearest."""
    return x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def write_image(path: str | Path, x: Tensor) -> None:
    """Write a (3, H, W) float tensor in [0, 1] (or uint8) as an 8-bit RGB PNG/TIFF/...
    atomically."""
    arr = np.ascontiguousarray(x.permute(1, 2, 0).numpy()) if x.dtype == torch.uint8 else None
    img = Image.fromarray(to_uint8(x) if arr is None else arr, mode="RGB")
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format {Path(path).suffix!r}")
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt)
