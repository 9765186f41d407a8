"""The images an evaluation runs on: a folder of image files or WebDataset test shards.

``--data`` may be a folder of images (PNG, JPEG, TIFF/GeoTIFF that Pillow reads, ...), a folder
of shards written by ``ltchm preprocess`` (its ``test-*.tar``), one ``.tar`` file, or a shard
pattern (``shards/test-{000000..000003}.tar``). Images come as (H, W, 3) uint8 arrays, one at
a time, so an archive-sized test set never has to fit in memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ltchm.imageio import Image8, ImageFormatError, list_images, read_image, to_uint8

__all__ = ["IMAGE_KEYS", "ImageSource", "open_images"]

# Sample keys holding the image in a shard, in order of preference.
IMAGE_KEYS = ("png", "webp", "jpg", "jpeg", "tif", "tiff")


@dataclass
class ImageSource:
    """Named uint8 RGB images from a folder or from shards."""

    description: str
    files: list[Path] | None = None
    shards: list[str] | None = None
    max_images: int | None = None
    drop_alpha: bool = False

    def __len__(self) -> int:
        """The number of images, known up front for folders only (shards: ``TypeError``)."""
        if self.files is None:
            raise TypeError("the number of images in shards is known only once read")
        n = len(self.files)
        return n if self.max_images is None else min(n, self.max_images)

    def count(self) -> int | None:
        try:
            return len(self)
        except TypeError:
            return None

    def __iter__(self) -> Iterator[tuple[str, Image8]]:
        images = self._files() if self.files is not None else self._samples()
        for i, item in enumerate(images):
            if self.max_images is not None and i >= self.max_images:
                return
            yield item

    def _files(self) -> Iterator[tuple[str, Image8]]:
        for path in self.files or []:
            yield path.name, to_uint8(read_image(path, drop_alpha=self.drop_alpha))

    def _samples(self) -> Iterator[tuple[str, Image8]]:
        import webdataset as wds

        # Order matters for reproducible outputs: no shuffling, one node, one worker.
        # A single string is what webdataset brace-expands ("test-{000000..000003}.tar").
        shards = self.shards or []
        urls = shards[0] if len(shards) == 1 else shards
        dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
        for sample in dataset:
            key = sample["__key__"]
            ext = next((k for k in IMAGE_KEYS if k in sample), None)
            if ext is None:
                found = sorted(k for k in sample if not k.startswith("__"))
                raise ImageFormatError(
                    f"{sample.get('__url__', 'shard')}: sample {key!r} has no image "
                    f"({', '.join(IMAGE_KEYS)}); it has {found}"
                )
            yield key, _decode_sample(sample[ext], f"{key}.{ext}", self.drop_alpha)


def _decode_sample(data: bytes, name: str, drop_alpha: bool) -> Image8:
    img: Image.Image
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:
        raise ImageFormatError(f"{name}: not a readable image ({exc})") from None
    if img.mode == "RGBA" and drop_alpha:
        img = img.convert("RGB")
    if img.mode != "RGB":
        raise ImageFormatError(f"{name}: mode {img.mode!r}; the evaluation takes 8-bit RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def open_images(
    data: str | Path, max_images: int | None = None, drop_alpha: bool = False
) -> ImageSource:
    """The images of ``data`` (folder of images, folder of test shards, a tar, a pattern)."""
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    text = str(data)
    path = Path(text)
    if "{" in text or path.suffix == ".tar":
        if "{" not in text and not path.is_file():
            raise FileNotFoundError(f"shard not found: {path}")
        return ImageSource(f"shards {text}", None, [text], max_images, drop_alpha)
    if not path.is_dir():
        raise FileNotFoundError(f"--data: no such folder, shard or pattern: {path}")
    files = list_images(path)
    if files:
        return ImageSource(f"folder {path} ({len(files)} images)", files, None, max_images,
                           drop_alpha)  # fmt: skip
    shards = sorted(path.glob("test-*.tar"))
    if shards:
        return ImageSource(
            f"shards {path}/test-*.tar ({len(shards)} shards)",
            None,
            [str(s) for s in shards],
            max_images,
            drop_alpha,
        )
    others = sorted(p.name for p in path.glob("*.tar"))
    hint = f"; it has shards {others[:3]}: pass one or a pattern explicitly" if others else ""
    raise FileNotFoundError(f"--data {path}: no images and no test-*.tar shards{hint}")
