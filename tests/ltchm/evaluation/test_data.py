import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from ltchm.evaluation.data import open_images
from ltchm.imageio import ImageFormatError, list_images


def _encoded(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def _write_shard(path: Path, samples: dict[str, tuple[str, np.ndarray]]) -> None:
    with wds.TarWriter(str(path)) as sink:
        for key, (ext, img) in samples.items():
            meta = {"source": key, "width": img.shape[1], "height": img.shape[0]}
            sink.write({"__key__": key, ext: _encoded(img, ext.upper()), "json": json.dumps(meta)})


def test_folder_of_images(tmp_path: Path, ucm_dir: Path) -> None:
    for p in list_images(ucm_dir)[:3]:
        shutil.copy(p, tmp_path)
    src = open_images(tmp_path)
    assert len(src) == 3 and src.count() == 3
    items = list(src)
    assert [n for n, _ in items] == sorted(p.name for p in tmp_path.iterdir())
    for name, img in items:
        with Image.open(tmp_path / name) as im:
            assert np.array_equal(img, np.asarray(im.convert("RGB")))
    limited = open_images(tmp_path, max_images=2)
    assert len(limited) == 2 and len(list(limited)) == 2


def test_test_shards(tmp_path: Path, ucm_images, dota_crop) -> None:
    a, b = ucm_images.values()
    _write_shard(tmp_path / "test-000000.tar", {"ucm_a": ("png", a), "dota": ("webp", dota_crop)})
    _write_shard(tmp_path / "test-000001.tar", {"ucm_b": ("png", b)})
    _write_shard(tmp_path / "train-000000.tar", {"not_me": ("png", a)})
    src = open_images(tmp_path)
    assert src.count() is None and "2 shards" in src.description
    items = dict(src)
    assert list(items) == ["ucm_a", "dota", "ucm_b"]  # shard order, then sample order
    assert np.array_equal(items["ucm_a"], a) and np.array_equal(items["ucm_b"], b)
    assert np.array_equal(items["dota"], dota_crop)  # lossless WebP
    # One shard, or a brace pattern, given explicitly; and a limit.
    assert list(dict(open_images(tmp_path / "train-000000.tar"))) == ["not_me"]
    pattern = str(tmp_path / "test-{000000..000001}.tar")
    assert len(list(open_images(pattern, max_images=2))) == 2


def test_bad_data_is_a_clear_error(tmp_path: Path, dev_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        open_images(tmp_path / "missing")
    (tmp_path / "train-000000.tar").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"no images and no test-\*\.tar.*train-000000"):
        open_images(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    _write_shard(bad / "test-000000.tar", {})
    with wds.TarWriter(str(bad / "test-000001.tar")) as sink:
        sink.write({"__key__": "meta_only", "json": b"{}"})
    with pytest.raises(ImageFormatError, match=r"meta_only.*no image"):
        list(open_images(bad))
    rgba = np.zeros((40, 40, 4), np.uint8)
    folder = tmp_path / "rgba"
    folder.mkdir()
    Image.fromarray(rgba).save(folder / "x.png")
    with pytest.raises(ImageFormatError, match=r"x\.png"):
        list(open_images(folder))
    ((name, img),) = list(open_images(folder, drop_alpha=True))
    assert name == "x.png" and img.shape == (40, 40, 3)
    with pytest.raises(ValueError, match="max_images"):
        open_images(folder, max_images=0)
