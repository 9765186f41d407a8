"""The error-bounded layer: |x - decoded| <= E at every valid pixel, on every dtype the scene
codec supports, odd-sized scenes and windowed decodes; E = 0 bit-exact; corruption and a
prediction that differs are errors, never wrong pixels. Scenes are generated here."""

from __future__ import annotations

import csv
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window

from jobs.compress_scenes import main as compress_main
from ltchm.codec.checkpoint import prepare_for_coding, save_checkpoint
from ltchm.config import ScenesConfig
from ltchm.zoo import get_model
from pipeline.scenes.container import SceneReader
from pipeline.scenes.decompress import main as decompress_main
from pipeline.scenes.encode import encode_scene
from pipeline.scenes.mosaic import SceneDecoder
from pipeline.scenes.residual import ResidualError, decode_band, encode_band, predict
from pipeline.scenes.tiles import TileCoder

DTYPES = ("uint8", "uint16", "int16", "float32")


@pytest.fixture(scope="module")
def coder() -> TileCoder:
    """A small untrained model: its decode is far from the source, so the residual does the
    work and the bound is tested where it matters most."""
    torch.manual_seed(0)
    model = get_model("ltchm-baseline", N=8, context="checkerboard").eval()
    return TileCoder(prepare_for_coding(model))


def _source(dtype: str, rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, float]:
    """A smooth field with texture and noise in ``dtype``'s typical range, and its nodata."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.sin(xx / 9.0) + np.cos(yy / 13.0) + 0.3 * rng.standard_normal((h, w))
    if dtype == "uint8":
        return np.clip(base * 50 + 128, 1, 255).astype(dtype), 0.0
    if dtype == "uint16":
        return np.clip(base * 800 + 3000, 1, 65535).astype(dtype), 0.0
    if dtype in ("int16", "int32"):
        return (base * 700 - 200).astype(dtype), -9999.0  # negatives
    return (base * 0.1 - 0.05).astype(dtype), float("nan")


def _write(path: Path, data: np.ndarray, nodata: float) -> Path:
    count, h, w = data.shape
    profile = {
        "driver": "GTiff", "width": w, "height": h, "count": count, "dtype": str(data.dtype),
        "crs": "EPSG:32631", "transform": from_origin(500000, 4000000, 10, 10),
        "nodata": nodata,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _scene(tmp_path: Path, dtype: str, h: int = 77, w: int = 101, bands: int = 2) -> Path:
    rng = np.random.default_rng(1)
    data = np.stack([_source(dtype, rng, h, w)[0] for _ in range(bands)])
    nodata = _source(dtype, rng, 1, 1)[1]
    data[:, 10:30, 40:70] = nodata  # a hole of nodata
    return _write(tmp_path / f"{dtype}.tif", data, nodata)


def _within(src: np.ndarray, got: np.ndarray, valid: np.ndarray, bound: float) -> float:
    d = np.abs(got[valid].astype(np.float64) - src[valid].astype(np.float64))
    assert np.isfinite(d).all()
    worst = float(d.max())
    assert worst <= bound, f"decoded {worst} off the source, bound {bound}"
    return worst


# -- the band coder on its own ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [*DTYPES, "float64", "int32"])
@pytest.mark.parametrize("bound", [0, 2, 0.75])
def test_band_round_trip_within_the_bound(dtype, bound):
    rng = np.random.default_rng(0)
    x, _ = _source(dtype, rng, 37, 53)
    lo, hi = float(x.min()), float(x.max())
    unit = (x.astype(np.float64) - lo) / (hi - lo) + rng.normal(0, 0.05, x.shape)
    p = predict(unit, lo, hi, dtype)
    valid = rng.random(x.shape) > 0.2
    record, y = encode_band(x, valid, p, bound)
    got, e = decode_band(record, valid, p)
    assert e == bound and np.array_equal(got.view(np.uint8), y.view(np.uint8))
    limit = bound if dtype.startswith("float") else math.floor(bound)
    worst = _within(x, got, valid, limit)
    if bound == 0:  # lossless: the very bits (float: the same bit patterns)
        assert np.array_equal(got[valid].view(np.uint8), x[valid].view(np.uint8))
    elif bound == 2:
        assert worst == limit or dtype.startswith("float")  # the bound is used, not wasted
    assert not got[~valid].any()


def test_extremes_and_nodata_never_break_the_bound():
    # values at the type's edges, a prediction far off, and pixels whose nearest
    # reconstruction is the nodata value: each must stay within the bound and off nodata
    x = np.array([[0, 1, 2, 65535, 65534, 3]], dtype=np.uint16)
    p = np.array([[65535, 0, 0, 0, 65535, 0]], dtype=np.uint16)
    valid = np.ones(x.shape, bool)
    record, y = encode_band(x, valid, p, 2, nodata=0.0)
    got, _ = decode_band(record, valid, p)
    assert np.array_equal(got, y) and _within(x, got, valid, 2) <= 2
    assert (got[x != 0] != 0).all()  # 1 and 2 would round to 0, the nodata value: kept off it
    f = np.array([[3.0e38, -3.0e38, 1e-30, -0.0, 7.0]], dtype=np.float32)
    fp = np.array([[-3.0e38, 3.0e38, 0.0, 0.0, 7.5]], dtype=np.float32)
    for bound in (0, 1e30, 0.25):
        record, _ = encode_band(f, np.ones(f.shape, bool), fp, bound)
        got, _ = decode_band(record, np.ones(f.shape, bool), fp)
        _within(f, got, np.ones(f.shape, bool), bound)


def test_corruption_or_another_prediction_is_an_error():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4000, (40, 40)).astype(np.uint16)
    p = np.clip(x.astype(np.int64) + rng.integers(-50, 50, x.shape), 0, 65535).astype(np.uint16)
    valid = np.ones(x.shape, bool)
    record, _ = encode_band(x, valid, p, 2)
    p2 = p.copy()
    p2[5, 5] += 1  # a decoder whose learned decode differs by one level at one pixel
    with pytest.raises(ResidualError, match="does not reproduce"):
        decode_band(record, valid, p2)
    bad = bytearray(record)
    bad[-3] ^= 0x40
    with pytest.raises(ResidualError):
        decode_band(bytes(bad), valid, p)
    with pytest.raises(ResidualError, match="lengths"):
        decode_band(record[:-1], valid, p)
    head = bytearray(record)  # a length field announcing more than the record holds
    struct.pack_into("<I", head, 1 + 8 + 8 + 4, 1 << 30)
    with pytest.raises(ResidualError, match="lengths"):
        decode_band(bytes(head), valid, p)


def test_prediction_is_reproducible_across_threads_and_batches(coder):
    # the float32 decode differs with the thread count and the batch (measured); the
    # float64 synthesis snapped to its grid must not
    torch.manual_seed(1)
    y_hat = torch.round(torch.randn(3, 8, 4, 5) * 3).double()
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = coder._synthesis64(y_hat, 64, 80)
        torch.set_num_threads(2)
        b = coder._synthesis64(y_hat, 64, 80)
        single = coder._synthesis64(y_hat[1:2], 64, 80)
    finally:
        torch.set_num_threads(old)
    for other in (b[1], single[0]):
        for c in range(3):
            pa = predict(a[1, c], 0.0, 65535.0, "uint16")
            assert np.array_equal(pa, predict(other[c], 0.0, 65535.0, "uint16"))


# -- whole scenes --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_scene_within_the_bound_whole_and_windowed(dtype, coder, tmp_path):
    src = _scene(tmp_path, dtype)
    cfg_bound = 2.0 if dtype != "float32" else 0.002
    for bound in (0.0, cfg_bound):
        out = tmp_path / f"{dtype}-{bound}.ltcs"
        encode_scene(src, out, coder, ScenesConfig(tile_size=64, overlap=8, max_error=bound))
        with rasterio.open(src) as ds:
            x, valid = ds.read(), ds.read_masks() > 0
        with SceneReader(out) as r:
            assert r.version == 2 and r.header.error is not None
            dec = SceneDecoder(r, coder)
            full, _ = dec.read()
            _within(x, full, valid, bound)
            if bound == 0:
                assert np.array_equal(full[valid].view(np.uint8), x[valid].view(np.uint8))
            assert np.array_equal(full[~valid], x[~valid], equal_nan=dtype == "float32")
            for win in (Window(37, 21, 41, 40), Window(70, 50, 31, 27), Window(0, 0, 1, 1)):
                part, _ = dec.read(win)
                sl = (slice(None), *win.toslices())
                assert np.array_equal(part.view(np.uint8), full[sl].view(np.uint8))


def test_plain_files_stay_version_1(coder, tmp_path):
    src = _scene(tmp_path, "uint16", 70, 90, 1)
    out = tmp_path / "plain.ltcs"
    encode_scene(src, out, coder, ScenesConfig(tile_size=64, overlap=8))
    with SceneReader(out) as r:
        assert r.version == 1 and r.header.error is None and b'"error"' not in r.header.to_json()
        assert all(r.tile(i).residuals is None for i in range(len(r)))
        SceneDecoder(r, coder).read()


def test_psnr_floor_codes_only_the_tiles_below_it(coder, tmp_path):
    # band 1 a smooth ramp the untrained model still misses, band 2 constant per tile...
    h, w = 128, 128
    ramp = np.tile(np.linspace(1000, 1400, w), (h, 1)).astype(np.uint16)
    flat = np.full((h, w), 500, dtype=np.uint16)
    flat[:, 64:] = np.random.default_rng(0).integers(0, 4000, (h, 64))  # ...but noise at right
    src = _write(tmp_path / "mixed.tif", np.stack([ramp, flat]), 0.0)
    out = tmp_path / "floor.ltcs"
    cfg = ScenesConfig(tile_size=64, overlap=0, psnr_floor=30.0, max_error=1)
    encode_scene(src, out, coder, cfg)
    with SceneReader(out) as r:
        coded = [[bool(res) for res in (r.tile(i).residuals or [b"", b""])] for i in range(4)]
        full, _ = SceneDecoder(r, coder).read()
    # constant tiles (left of band 2) decode exactly without a residual; the noise does not
    assert [c[1] for c in coded] == [False, True, False, True]
    x = np.stack([ramp, flat])
    for i, (r0, c0) in enumerate([(0, 0), (0, 64), (64, 0), (64, 64)]):
        for b in range(2):
            if coded[i][b]:
                tile = (slice(r0, r0 + 64), slice(c0, c0 + 64))
                assert np.abs(full[b][tile].astype(int) - x[b][tile].astype(int)).max() <= 1


def test_cli_max_error_on_a_uint16_scene(coder, tmp_path, monkeypatch):
    # the 'done when': compress-scenes --max-error 2 (and 0) -> every valid pixel within 2
    monkeypatch.setenv("LTCHM_MODEL_STORE", str(tmp_path / "store"))
    model_path = tmp_path / "model.pt"
    save_checkpoint(coder.model, model_path)
    src = _scene(tmp_path, "uint16", 71, 97, 3)
    with rasterio.open(src) as ds:
        x, valid = ds.read(), ds.read_masks() > 0
    for bound in (2, 0):
        out = tmp_path / f"out{bound}"
        args = [str(src), "--model", str(model_path), "--out", str(out), "--local",
                "--no-progress", "--tile-size", "64", "--overlap", "8",
                "--max-error", str(bound)]  # fmt: skip
        assert compress_main(args) == 0
        with open(out / "report.csv") as f:
            row = next(csv.DictReader(f))
        assert row["status"] == "done" and float(row["max_error"]) == bound
        assert all(float(m) <= bound for m in row["max_abs_error"].split(";"))
        assert all(int(n) > 0 for n in row["residual_tiles"].split(";"))
        tif = tmp_path / f"dec{bound}.tif"
        assert decompress_main([str(out / f"{src.stem}.ltcs"), str(tif), "--no-progress"]) == 0
        with rasterio.open(tif) as ds:
            got = ds.read()
        _within(x, got, valid, bound)
