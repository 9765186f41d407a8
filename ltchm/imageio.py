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


def read_image(path: str | Path, drop_alpha: bool = False) -> Tensor:
    """Read an 8-bit RGB image as a (3, H, W) float tensor in [0, 1].

    Args:
        path: PNG, JPEG, TIFF, BMP or WebP file.
        drop_alpha: accept RGBA by discarding the alpha band (otherwise an error).

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
    except Exception as exc:
        raise ImageFormatError(f"{path}: not a readable image ({exc})") from None
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
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def to_uint8(x: Tensor) -> Image8:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounding to nearest."""
    return x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def write_image(path: str | Path, x: Tensor) -> None:
    """Write a (3, H, W) float tensor in [0, 1] as an 8-bit RGB PNG/TIFF/... atomically."""
    img = Image.fromarray(to_uint8(x), mode="RGB")
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format {Path(path).suffix!r}")
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt)
