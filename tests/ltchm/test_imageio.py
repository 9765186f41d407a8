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


def test_more_than_8_bits_is_refused_not_truncated(scenes_dir: Path, tmp_path: Path) -> None:
    """Pillow reads 48-bit RGB as 'RGB' with the low bits gone; the codec says so instead."""
    import rasterio

    with pytest.raises(ImageFormatError, match=r"16-bit image.*compress-scenes"):
        read_image(scenes_dir / "riocolor_rgb16.tif")
    arr = np.random.default_rng(0).integers(0, 65535, (3, 16, 16), dtype=np.uint16)
    profile = {"driver": "PNG", "width": 16, "height": 16, "count": 3, "dtype": "uint16"}
    with rasterio.open(tmp_path / "deep.png", "w", **profile) as dst:
        dst.write(arr)
    with pytest.raises(ImageFormatError, match="16-bit image"):
        read_image(tmp_path / "deep.png")


def test_georeferenced_inputs_are_recognised(scenes_dir: Path, ucm_dir: Path, tmp_path) -> None:
    from ltchm.imageio import is_georeferenced

    assert is_georeferenced(scenes_dir / "rasterio_RGB.byte.tif")
    assert not is_georeferenced(list_images(ucm_dir)[0])
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    assert not is_georeferenced(tmp_path / "a.png")
    (tmp_path / "a.pgw").write_text("1\n0\n0\n-1\n0\n0\n")  # a world file beside it
    assert is_georeferenced(tmp_path / "a.png")


def test_an_animated_image_is_refused_not_cut_to_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (0, 128, 255)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageFormatError, match="animated image of 3 frames"):
        read_image(tmp_path / "a.gif")


def test_an_image_over_the_codec_limit_is_refused_from_its_header(tmp_path) -> None:
    """A PNG header announcing 14000 x 14000 (its pixel data a 1 x 1 image's): refused by
    name, pointing to the windowed scene path, before any decoding."""
    import struct
    import zlib

    from PIL import Image

    from ltchm.imageio import ImageFormatError, read_image

    small = tmp_path / "small.png"
    Image.new("RGB", (1, 1)).save(small)
    data = bytearray(small.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", 14000, 14000)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    (tmp_path / "big.png").write_bytes(bytes(data))
    with pytest.raises(ImageFormatError, match=r"too large for the image codec.*compress-scenes"):
        read_image(tmp_path / "big.png")
