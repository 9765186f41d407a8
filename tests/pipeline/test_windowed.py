"""Large images: rasters tiled by windowed reads, 8-bit PNG/JPEG by row strips, other
formats over ``preprocess.max_worker_memory`` refused from their header, never decoded whole."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin
from rasterio.windows import Window

from jobs.preprocess import preprocess
from ltchm.config import PreprocessConfig
from pipeline.windowed import decode_bytes, read_header

TRAIN = {"split_ratios": (1.0, 0.0, 0.0), "tile_size": 256, "stride": 256}
SMALL = 2**26  # the smallest budget the config accepts (64 MiB)
WHOLE = {"window_reads_above": 2**40}  # every image under the budget decoded whole


def _raster(path: Path, n: int, dtype: str, count: int) -> Path:
    """A tiled raster with texture in its top-left quarter and nodata elsewhere."""
    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff", "height": n, "width": n, "count": count, "dtype": dtype,
        "crs": "EPSG:32633", "transform": from_origin(500000, 4600000, 2.0, 2.0),
        "tiled": True, "blockxsize": 256, "blockysize": 256, "nodata": 0,
    }  # fmt: skip
    hi = 255 if dtype == "uint8" else 4000
    with rasterio.open(path, "w", **profile) as dst:
        block = rng.integers(1, hi, (count, n // 2, n // 2)).astype(dtype)
        dst.write(block, window=Window(0, 0, n // 2, n // 2))
    return path


def _tiles(out: Path) -> dict[str, tuple[bytes, dict]]:
    tiles = {}
    for shard in json.loads((out / "manifest.json").read_text())["shards"]:
        with tarfile.open(out / shard["name"]) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        for name, data in files.items():
            if name.endswith(".png"):
                key = name[: -len(".png")]
                tiles[key] = (data, json.loads(files[key + ".json"]))
    return tiles


def test_header_estimates(tmp_path: Path) -> None:
    tif = _raster(tmp_path / "a.tif", 512, "uint16", 4)
    h = read_header(tif, "a.tif")
    assert (h.width, h.height, h.bands, h.read_bands, h.itemsize, h.windowed) == (
        512, 512, 4, 3, 2, True
    )  # fmt: skip
    assert decode_bytes(h) == 512 * 512 * (3 * 6 + 5)


def test_an_8bit_raster_over_the_budget_gives_the_same_tiles_by_windows(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _raster(folder / "scene.tif", 3072, "uint8", 3)  # 9.4 Mpx x 8 B: over 64 MiB
    whole = preprocess([folder], tmp_path / "whole", PreprocessConfig(**TRAIN, **WHOLE),
                       use_ray=False, progress=False)  # fmt: skip
    windowed = preprocess([folder], tmp_path / "win",
                          PreprocessConfig(**TRAIN, max_worker_memory=SMALL), use_ray=False,
                          progress=False)  # fmt: skip
    a, b = _tiles(tmp_path / "whole"), _tiles(tmp_path / "win")
    assert a.keys() == b.keys() and len(a) == 36  # the textured quarter; nodata skipped
    assert all(a[k][0] == b[k][0] for k in a)  # the same pixels
    assert any("read by windows" in c for c in b[next(iter(b))][1]["conversions"])
    assert windowed.manifest["tiles_skipped"] == whole.manifest["tiles_skipped"]


def test_a_16bit_raster_is_stretched_from_a_decimated_read(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _raster(folder / "scene.tif", 2048, "uint16", 4)  # 4.2 Mpx x 23 B: over 64 MiB
    preprocess([folder], tmp_path / "whole", PreprocessConfig(**TRAIN, **WHOLE), use_ray=False,
               progress=False)  # fmt: skip
    preprocess([folder], tmp_path / "win", PreprocessConfig(**TRAIN, max_worker_memory=SMALL),
               use_ray=False, progress=False)  # fmt: skip
    a, b = _tiles(tmp_path / "whole"), _tiles(tmp_path / "win")
    assert a.keys() == b.keys() and a
    sa, sb = a[next(iter(a))][1]["stretch"], b[next(iter(b))][1]["stretch"]
    assert sb["decimation"] >= 1
    assert np.allclose(sa["low"], sb["low"], rtol=0.02) and np.allclose(
        sa["high"], sb["high"], rtol=0.02
    )


@pytest.mark.parametrize("mode", ["RGB", "LA"])
def test_a_large_png_is_read_by_row_strips_with_the_same_tiles(tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (2100, 2050, len(mode)), dtype=np.uint8)
    if mode == "LA":
        pixels[:700, :, 1] = 0  # transparent top: those tiles are nodata
    Image.fromarray(pixels.squeeze(), mode).save(folder / "big.png", compress_level=1)
    # stride < tile: strips overlap, each line is still decoded once
    cfg = {**TRAIN, "stride": 200}
    whole = preprocess([folder], tmp_path / "whole", PreprocessConfig(**cfg, **WHOLE),
                       use_ray=False, progress=False)  # fmt: skip
    strips = preprocess([folder], tmp_path / "strips",
                        PreprocessConfig(**cfg, window_reads_above=2**20), use_ray=False,
                        progress=False)  # fmt: skip
    a, b = _tiles(tmp_path / "whole"), _tiles(tmp_path / "strips")
    assert a.keys() == b.keys() and len(a) > 50
    assert all(a[k][0] == b[k][0] for k in a)
    assert all(a[k][1]["valid_fraction"] == b[k][1]["valid_fraction"] for k in a)
    assert any("read by row strips" in c for c in b[next(iter(b))][1]["conversions"])
    assert strips.manifest["tiles_skipped"] == whole.manifest["tiles_skipped"]


def test_a_palette_png_over_the_budget_is_refused_from_its_header(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((5000, 5000), np.uint8)).convert("P").save(folder / "big.png")
    result = preprocess([folder], tmp_path / "out",
                        PreprocessConfig(**TRAIN, max_worker_memory=SMALL), use_ray=False,
                        progress=False)  # fmt: skip
    (skipped,) = result.manifest["skipped"]
    assert "5000x5000: decoding it needs about" in skipped["reason"]
    assert "cannot be read by windows" in skipped["reason"]


def test_a_whole_image_split_does_not_decode_a_large_raster(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _raster(folder / "scene.tif", 3072, "uint8", 3)
    cfg = PreprocessConfig(split_ratios=(0.0, 1.0, 0.0), max_worker_memory=SMALL)
    result = preprocess([folder], tmp_path / "out", cfg, use_ray=False, progress=False)
    (skipped,) = result.manifest["skipped"]
    assert "a whole-image split keeps it in one piece" in skipped["reason"]
