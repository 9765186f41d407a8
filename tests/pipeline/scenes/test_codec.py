"""The scene codec on the real GeoTIFFs of ``../shared/data/dev/scenes``: georeferencing, masks
and bands survive; windows decode to the same bits as the whole; seams do not show."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window, from_bounds

from ltchm.codec import load_checkpoint, save_checkpoint
from ltchm.config import ScenesConfig
from ltchm.quickfit import quick_fit
from ltchm.zoo import get_model
from pipeline.scenes.container import SceneReader
from pipeline.scenes.decompress import bbox_window, main
from pipeline.scenes.encode import encode_scene
from pipeline.scenes.mosaic import SceneDecoder
from pipeline.scenes.tiles import TileCoder
from pipeline.scenes.verify import BandErrors, psnr_db, seam_psnr, window_errors

SCENES = {
    "rgb_byte": "rasterio_RGB.byte.tif",  # 3 x uint8, nodata 0 per band
    "rgb16": "riocolor_rgb16.tif",  # 3 x uint16 Landsat
    "naip": "opengeos_naip_m_4709963_se_14_1_20100629.tif",  # RGB + NIR, nodata 0
    "alpha": "riotiler_pix4d_alpha_nodata.tif",  # RGBA, nodata -10000 outside uint8
    "pan": "solaris_pan1.tif",  # 1 x uint16
    "ms10": "paddlers_ssst_multispectral.tif",  # 10 x uint16
    "geos": "riocogeo_image_geos.tif",  # geostationary CRS, internal mask, JPEG source
}
CFG = ScenesConfig(tile_size=256, overlap=16)


def fitted_scene_model(tmp_path_factory, images) -> Path:
    """A small model fitted briefly on the UC-Merced dev images, shared by the scene tests of
    a session through a file. Untrained weights reconstruct noise; seams and native-range
    PSNR only mean something for a model that reconstructs. The attention-free variant of
    LTCHM fits 8x faster on CPU (10 s here) and codes through the same code path."""
    path = tmp_path_factory.getbasetemp() / "scene-model-ltchm-baseline-n8.pt"
    if not path.exists():
        torch.manual_seed(0)
        model = get_model("ltchm-baseline", N=8, context="checkerboard")
        quick_fit(model, images, steps=200, lmbda=4096, patch=64, batch=4, lr=2e-3)
        save_checkpoint(model, path, lmbda=4096)
    return path


@pytest.fixture(scope="session")
def scene_model_path(tmp_path_factory, dev_images) -> Path:
    return fitted_scene_model(tmp_path_factory, dev_images)


@pytest.fixture(scope="module")
def model(scene_model_path):
    return load_checkpoint(scene_model_path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("store")
        mp.setenv("LTCHM_MODEL_STORE", str(path))
        yield path


@pytest.fixture(scope="module")
def encoded(model, scenes_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ltcs")
    coder = TileCoder(model)
    out = {}
    for key, name in SCENES.items():
        out[key] = root / f"{key}.ltcs"
        encode_scene(scenes_dir / name, out[key], coder, CFG)
    return out


@pytest.fixture(scope="module")
def decoded(encoded, scene_model_path, store, tmp_path_factory) -> dict[str, Path]:
    """Every scene through ``ltchm decompress-scene`` (COG, the default)."""
    root = tmp_path_factory.mktemp("tif")
    out = {}
    for key, path in encoded.items():
        out[key] = root / f"{key}.tif"
        args = [str(path), str(out[key]), "--model", str(scene_model_path), "--no-progress"]
        assert main(args) == 0
    return out


def _gdalinfo(path: Path) -> dict:
    done = subprocess.run(["gdalinfo", "-json", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _geo(info: dict) -> dict:
    """What must be identical: size, transform, CRS, bands' type, nodata, colour, masks."""
    return {
        "size": info["size"],
        "geoTransform": info.get("geoTransform"),
        "wkt": info.get("coordinateSystem", {}).get("wkt"),
        "bands": [
            (b["band"], b["type"], b.get("noDataValue"), b["colorInterpretation"],
             b.get("mask", {}).get("flags"), b.get("description"))
            for b in info["bands"]
        ],
        "metadata": info.get("metadata", {}).get(""),
    }  # fmt: skip


@pytest.mark.parametrize("key", SCENES)
def test_georeferencing_bands_and_masks_are_identical(key, scenes_dir, decoded):
    src_path, out_path = scenes_dir / SCENES[key], decoded[key]
    with rasterio.open(src_path) as src, rasterio.open(out_path) as out:
        for attr in ("crs", "transform", "width", "height", "count", "dtypes", "nodatavals",
                     "colorinterp", "descriptions", "units", "mask_flag_enums"):  # fmt: skip
            assert getattr(out, attr) == getattr(src, attr), attr
        for b in range(1, src.count + 1):
            assert np.array_equal(out.read_masks(b), src.read_masks(b)), f"mask of band {b}"
        assert np.array_equal(out.dataset_mask(), src.dataset_mask())
        alpha = [i + 1 for i, c in enumerate(src.colorinterp) if c.name == "alpha"]
        for b in alpha:  # stored losslessly
            assert np.array_equal(out.read(b), src.read(b))
        assert out.compression.name == "zstd"
        assert out.block_shapes[0] == (min(512, out.height), min(512, out.width)) or (
            out.block_shapes[0] == (256, 256)
        )
        if max(out.width, out.height) > 512:
            assert out.overviews(1)
    assert _geo(_gdalinfo(out_path)) == _geo(_gdalinfo(src_path))
    assert _gdalinfo(out_path)["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"


def _native_psnr(src_path: Path, out_path: Path) -> list[float]:
    """PSNR of each coded band over its valid pixels, peak = 255 or the band's valid range."""
    with rasterio.open(src_path) as src, rasterio.open(out_path) as out:
        errors = BandErrors.empty(src.count)
        for b in range(1, src.count + 1):
            valid = src.read_masks(b) > 0
            a, d = src.read(b)[valid].astype(float), out.read(b)[valid].astype(float)
            errors.sse[b - 1] = float(((a - d) ** 2).sum())
            errors.count[b - 1] = int(valid.sum())
            errors.lo[b - 1], errors.hi[b - 1] = float(a.min()), float(a.max())
        return psnr_db(errors, src.dtypes[0])[0]


@pytest.mark.parametrize("key", ["rgb_byte", "naip", "rgb16", "pan", "ms10"])
def test_quality_in_the_native_range(key, scenes_dir, decoded):
    """16-bit bands keep their range: PSNR over their own valid range, like 8-bit ones over
    255, is that of a codec at work (a broken mapping gives < 10 dB)."""
    psnr = _native_psnr(scenes_dir / SCENES[key], decoded[key])
    assert all(p is not None and p > 10.0 for p in psnr), psnr


def test_verify_pass_matches_an_independent_measurement(scenes_dir, encoded, decoded, model):
    """The job's PSNR (decoder blocks vs source windows, in two row bands) equals rasterio's."""
    with SceneReader(encoded["ms10"]) as r:
        dec = SceneDecoder(r, model)
        h = r.header
        halves = [(0, 128), (128, 256)]
        errs = [window_errors(dec, str(scenes_dir / SCENES["ms10"]), Window(0, a, h.width, b - a))
                for a, b in halves]  # fmt: skip
    psnr, _ = psnr_db(errs[0].merge(errs[1]), h.dtype)
    np.testing.assert_allclose(psnr, _native_psnr(scenes_dir / SCENES["ms10"], decoded["ms10"]))


@pytest.mark.parametrize("part", ["rasterio_rgb1.tif", "rasterio_rgb4.tif"])
def test_bbox_of_a_tile_file_decodes_its_exact_footprint(part, scenes_dir, encoded, decoded, model):
    """rgb1..rgb4 are pieces of RGB.byte: a bbox decode of a piece's bounds must give a raster
    georeferenced exactly like that piece, equal to the same window of the full decode, from
    the tiles it needs only."""
    with rasterio.open(scenes_dir / part) as piece:
        bounds, geo = piece.bounds, piece
        with rasterio.open(scenes_dir / SCENES["rgb_byte"]) as whole:
            win = from_bounds(*bounds, whole.transform).round_offsets().round_lengths()
            assert np.array_equal(whole.read(window=win), piece.read())  # the ground truth holds
        with SceneReader(encoded["rgb_byte"]) as r:
            w = bbox_window(r.header, tuple(bounds))
        assert (w.col_off, w.row_off, w.width, w.height) == (
            win.col_off, win.row_off, win.width, win.height)  # fmt: skip
        out = decoded["rgb_byte"].with_name(f"bbox-{part}")
        args = [str(encoded["rgb_byte"]), str(out), "--bbox", *map(str, bounds), "--no-progress",
                "--model", str(_model_path(model))]  # fmt: skip
        assert main(args) == 0
        with rasterio.open(out) as got, rasterio.open(decoded["rgb_byte"]) as full:
            # the pieces spell the CRS as PROJ.4 UTM 18, RGB.byte as EPSG:32618: the decode
            # keeps its own scene's CRS
            assert (got.transform, got.width, got.height, got.crs) == (
                geo.transform, geo.width, geo.height, full.crs)  # fmt: skip
            assert np.array_equal(got.read(), full.read(window=w))
            assert np.array_equal(got.read_masks(), piece.read_masks())
        info_got, info_piece = _gdalinfo(out), _gdalinfo(scenes_dir / part)
        assert info_got["geoTransform"] == info_piece["geoTransform"]
        assert info_got["size"] == info_piece["size"]


def _model_path(model) -> Path:
    from ltchm.codec.store import store_model

    return store_model(model)


def test_window_decode_reads_only_its_tiles_and_equals_the_full_decode(encoded, model):
    with SceneReader(encoded["naip"]) as r:
        full, _ = SceneDecoder(r, model).read()
        assert r.tiles_read == len(r)
    for col, row, w, h in [
        (0, 0, 40, 30),
        (230, 230, 60, 60),
        (500, 300, 434, 423),
        (933, 722, 1, 1),
    ]:
        with SceneReader(encoded["naip"]) as r:
            dec = SceneDecoder(r, model)
            part, _ = dec.read(Window(col, row, w, h))
            assert np.array_equal(part, full[:, row : row + h, col : col + w])
            assert r.tiles_read == len(dec.grid.tiles_for(col, row, w, h)) < len(r)


def test_seams_do_not_show(model, scenes_dir, tmp_path):
    """PSNR in 8-px bands around the tiles' seams vs the rest: independent tiles (no overlap)
    show their edges; the default overlap, blended, does not."""
    src = scenes_dir / SCENES["naip"]
    with rasterio.open(src) as ds:
        ref, valid = ds.read([1, 2, 3]), ds.dataset_mask() > 0
    coder = TileCoder(model)
    deficit = {}
    for overlap in (0, ScenesConfig().overlap):
        path = tmp_path / f"o{overlap}.ltcs"
        encode_scene(src, path, coder, ScenesConfig(tile_size=128, overlap=overlap))
        with SceneReader(path) as r:
            dec = SceneDecoder(r, model)
            out, _ = dec.read()
            seam, interior = seam_psnr(ref, out[:3], valid, dec.grid)
        deficit[overlap] = interior - seam
    assert deficit[0] > 1.0, deficit  # the measurement sees seams when they are there
    assert deficit[ScenesConfig().overlap] < 0.3, deficit


@pytest.mark.parametrize("mode", ["scene-linear", "tile-linear"])
def test_bit_depth_mappings_store_their_ranges(mode, model, scenes_dir, tmp_path, store):
    src = scenes_dir / SCENES["rgb16"]
    path = tmp_path / "t.ltcs"
    encode_scene(src, path, TileCoder(model), CFG.model_copy(update={"bit_mapping": mode}))
    with rasterio.open(src) as ds:
        lo = [float(ds.read(b).min()) for b in (1, 2, 3)]
    with SceneReader(path) as r:
        m = r.header.mapping
        assert m.mode == mode
        if mode == "scene-linear":  # the scene's valid range per band, in the header
            assert m.lo == lo and all(r.tile(i).mapping is None for i in range(len(r)))
        else:  # per tile, in each tile record
            assert not m.lo and all(len(r.tile(i).mapping) == 3 for i in range(len(r)))
            assert [min(r.tile(i).mapping[c][0] for i in range(len(r))) for c in range(3)] == lo
    out = tmp_path / "t.tif"
    assert main([str(path), str(out), "--model", str(_model_path(model)), "--no-progress"]) == 0
    assert all(p > 14.0 for p in _native_psnr(src, out))


def test_int16_and_float32_with_nodata_and_nan(model, scenes_dir, tmp_path, store):
    with rasterio.open(scenes_dir / SCENES["pan"]) as ds:
        pan, profile = ds.read(1).astype(np.float64), ds.profile
    hole = (slice(100, 180), slice(300, 420))
    cases = {
        "int16": (pan - 1000.0, -9999.0),  # negative values and a nodata value
        "float32": (pan / 1000.0 - 0.5, float("nan")),
    }
    for dtype, (values, nodata) in cases.items():
        data = values.astype(dtype)
        data[hole] = nodata
        src = tmp_path / f"{dtype}.tif"
        prof = profile | {"dtype": dtype, "nodata": nodata, "tiled": True, "blockxsize": 256,
                          "blockysize": 256}  # fmt: skip
        with rasterio.open(src, "w", **prof) as dst:
            dst.write(data, 1)
        enc, out = tmp_path / f"{dtype}.ltcs", tmp_path / f"{dtype}.out.tif"
        encode_scene(src, enc, TileCoder(model), CFG)
        assert main([str(enc), str(out), "--model", str(_model_path(model)), "--no-progress"]) == 0
        with rasterio.open(src) as a, rasterio.open(out) as b:
            assert b.dtypes == a.dtypes and b.transform == a.transform and b.crs == a.crs
            got = b.read(1)
            assert np.array_equal(b.read_masks(1), a.read_masks(1))
            if dtype == "float32":
                assert math.isnan(b.nodata) and np.array_equal(np.isnan(got), np.isnan(data))
            else:
                assert b.nodata == -9999 and np.array_equal(got == -9999, data == -9999)
        assert _native_psnr(src, out)[0] > 14.0


def test_corrupted_file_and_wrong_model_are_clear_errors(encoded, model, tmp_path, capsys):
    data = bytearray(encoded["pan"].read_bytes())
    with SceneReader(encoded["pan"]) as r:
        off, length, _ = r.index[2]
    data[off + length // 2] ^= 0xFF
    bad = tmp_path / "bad.ltcs"
    bad.write_bytes(bytes(data))
    model_path = str(_model_path(model))
    assert main([str(bad), str(tmp_path / "o.tif"), "--model", model_path, "--no-progress"]) == 1
    assert "tile 2: checksum mismatch" in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists() and not list(tmp_path.glob(".o.tif*"))
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    save_checkpoint(get_model("ltchm-baseline", N=8, context="checkerboard"), other)
    args = [str(encoded["pan"]), str(tmp_path / "o.tif"), "--model", str(other), "--no-progress"]
    assert main(args) == 1
    assert "was encoded with ltchm-baseline" in capsys.readouterr().err
    args = [str(encoded["pan"]), str(tmp_path / "o.tif"), "--bbox", "0", "0", "1", "1"]
    assert main([*args, "--model", model_path]) == 1
    assert "does not meet the scene" in capsys.readouterr().err


def test_gtiff_output_with_deflate(encoded, model, tmp_path, scenes_dir):
    out = tmp_path / "g.tif"
    args = [str(encoded["naip"]), str(out), "--format", "gtiff", "--compress", "deflate",
            "--model", str(_model_path(model)), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    with rasterio.open(out) as ds, rasterio.open(scenes_dir / SCENES["naip"]) as src:
        assert ds.compression.name == "deflate" and ds.profile["tiled"]
        assert ds.overviews(1) == [2] and ds.transform == src.transform
    assert _gdalinfo(out)["metadata"]["IMAGE_STRUCTURE"].get("PREDICTOR") == "2"


def test_decoding_finds_the_model_in_the_local_store(encoded, model, tmp_path, store, capsys):
    out = tmp_path / "s.tif"
    args = [str(encoded["pan"]), str(out), "--no-progress"]
    shutil.rmtree(store, ignore_errors=True)
    assert main(args) == 1
    assert "not in the local model store" in capsys.readouterr().err
    _model_path(model)
    assert main(args) == 0 and out.exists()
    capsys.readouterr()
    assert main([str(encoded["pan"]), "--info"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"] == [[1]]
