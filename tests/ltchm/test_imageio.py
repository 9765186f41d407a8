from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ltchm.imageio import ImageFormatError, list_images, read_image, write_image


def test_reads_ucm(ucm_dir: Path) -> None:
    x = read_image(list_images(ucm_dir)[0])
    assert x.shape == (3, 256, 256) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (7, 300, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = read_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png", x)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), arr)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(("mode", "shape"), [("RGBA", (5, 5, 4)), ("L", (5, 5)), ("I;16", (5, 5))])
def test_other_band_counts_are_clear_errors(tmp_path: Path, mode: str, shape: tuple) -> None:
    if mode == "I;16":
        img = Image.fromarray(np.zeros(shape, dtype=np.uint16))
    else:
        img = Image.fromarray(np.zeros(shape, dtype=np.uint8), mode=mode)
    img.save(tmp_path / "x.png")
    with pytest.raises(ImageFormatError, match="compress-scenes"):
        read_image(tmp_path / "x.png")


def test_rgba_alpha_can_be_dropped(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4, 4), 200, dtype=np.uint8), mode="RGBA").save(tmp_path / "x.png")
    assert read_image(tmp_path / "x.png", drop_alpha=True).shape == (3, 4, 4)


def test_unreadable(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(ImageFormatError, match="not a readable image"):
        read_image(tmp_path / "x.png")
