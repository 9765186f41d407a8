"""Quality and rate targets over a family of rate points (small untrained models, generated
scenes): each tile takes the rate point that meets the target with the fewest bytes, the file
records it, decoding finds it; an unmet target is bounded when allowed, else the scene fails
and the batch goes on."""

from __future__ import annotations

import csv
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
from pipeline.scenes.encode import encode_scene, plan_scene
from pipeline.scenes.mosaic import SceneDecoder, grid_of
from pipeline.scenes.source import open_scene, read_tile
from pipeline.scenes.targets import FamilyCoder, TargetError, resolve_family
from pipeline.scenes.tiles import TileCoder

CFG = {"tile_size": 64, "overlap": 8}


def _model(seed: int, n: int, lmbda: float):
    torch.manual_seed(seed)
    m = get_model("ltchm-baseline", N=n, context="checkerboard").eval()
    m.lmbda = lmbda
    return prepare_for_coding(m)


@pytest.fixture(scope="module")
def family() -> list[TileCoder]:
    """Two untrained 'rate points': different weights give different bytes and PSNR."""
    return [TileCoder(_model(0, 8, 128)), TileCoder(_model(1, 12, 512))]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    h, w = 90, 117
    _, xx = np.mgrid[0:h, 0:w]
    data = np.stack(
        [np.clip(2000 + 600 * np.sin(xx / (7 + b)) + 80 * rng.standard_normal((h, w)), 1, None)
         for b in range(2)]
    ).astype(np.uint16)  # fmt: skip
    path = tmp_path_factory.mktemp("scene") / "ms.tif"
    profile = {"driver": "GTiff", "width": w, "height": h, "count": 2, "dtype": "uint16",
               "crs": "EPSG:32631", "transform": from_origin(0, 0, 10, 10),
               "nodata": 0}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _tile_sizes(scene: Path, coder: TileCoder, cfg: ScenesConfig) -> list[int]:
    """Each tile's record size when coded by ``coder`` alone."""
    header = plan_scene(str(scene), cfg, coder.identity)
    grid = grid_of(header)
    with open_scene(str(scene)) as ds:
        return [
            len(coder.encode(header, grid, i, read_tile(ds, Window(*grid.window(i)), header)))
            for i in range(len(grid))
        ]


def test_low_target_takes_the_fewest_bytes_per_tile(family, scene, tmp_path):
    cfg = ScenesConfig(**CFG, target_psnr=1.0)
    coder = FamilyCoder(family, target_psnr=1.0)
    out = tmp_path / "low.ltcs"
    encode_scene(scene, out, coder, cfg)
    sizes = [_tile_sizes(scene, c, ScenesConfig(**CFG)) for c in family]
    with SceneReader(out) as r:
        assert [m.weights_hash for m in r.header.family] == [
            c.identity.weights_hash for c in family
        ]
        chosen = [r.tile(i).model for i in range(len(r))]
        SceneDecoder(r, coder).read()  # the family decodes its own file
    want = [int(np.argmin([s[i] for s in sizes])) for i in range(len(chosen))]
    assert chosen == want and all(n["met"] for n in coder.notes)


def test_unmet_target_fails_or_is_bounded(family, scene, tmp_path):
    coder = FamilyCoder(family, target_psnr=80.0)
    with pytest.raises(TargetError, match="no rate point meets the target"):
        encode_scene(scene, tmp_path / "x.ltcs", coder, ScenesConfig(**CFG, target_psnr=80.0))
    # with a floor allowed, the tiles below 80 dB get the bound that guarantees 80 dB
    cfg = ScenesConfig(**CFG, target_psnr=80.0, psnr_floor=20.0)
    coder.notes.clear()
    out = tmp_path / "bounded.ltcs"
    encode_scene(scene, out, coder, cfg)
    assert all(not n["met"] and n["bounded"] for n in coder.notes)
    with SceneReader(out) as r, rasterio.open(scene) as ds:
        got, _ = SceneDecoder(r, coder).read()
        x = ds.read()
    peak = float(x.max() - x.min())
    for b in range(2):
        d = got[b].astype(np.float64) - x[b]
        mse = float(np.mean(d * d))
        assert mse == 0 or 10 * np.log10(peak**2 / mse) >= 80.0


def test_bpp_target_fits_the_budget(family, scene, tmp_path):
    sizes = [_tile_sizes(scene, c, ScenesConfig(**CFG)) for c in family]
    grid = grid_of(plan_scene(str(scene), ScenesConfig(**CFG), family[0].identity))
    owned = [grid.owned(i)[2] * grid.owned(i)[3] for i in range(len(grid))]
    budget = max(8 * max(s[i] for s in sizes) / owned[i] for i in range(len(grid)))
    coder = FamilyCoder(family, target_bpp=budget)
    encode_scene(scene, tmp_path / "bpp.ltcs", coder, ScenesConfig(**CFG, target_bpp=budget))
    assert all(n["met"] and n["bpp"] <= budget for n in coder.notes)
    coder = FamilyCoder(family, target_bpp=0.001)
    with pytest.raises(TargetError, match="codes it that small"):
        encode_scene(scene, tmp_path / "no.ltcs", coder, ScenesConfig(**CFG, target_bpp=0.001))


def test_cli_family_from_the_registry(family, scene, tmp_path, monkeypatch):
    """A family registered as ltchm-lambda{λ} in a temporary MLflow store, targeted through
    the CLI; the report gives target and achieved values; decoding finds each rate point."""
    from mlflow import MlflowClient

    from jobs.training.tracking import log_and_register_model
    from ltchm.config import Config
    from ltchm.tracking import ensure_experiment

    monkeypatch.setenv("LTCHM_MODEL_STORE", str(tmp_path / "store"))
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    exp = ensure_experiment(uri, "family", str(tmp_path / "artifacts"))
    for coder in family:
        ckpt = tmp_path / f"l{coder.identity.lmbda:g}.pt"
        save_checkpoint(coder.model, ckpt, lmbda=coder.identity.lmbda)
        cfg = Config.model_validate({"loss": {"lmbda": coder.identity.lmbda}})
        run = MlflowClient(uri).create_run(exp)
        log_and_register_model(uri, run.info.run_id, ckpt, cfg, coder.identity.weights_hash)
    spec = "models:/ltchm-lambda*@candidate"
    assert resolve_family(spec, uri) == [
        "models:/ltchm-lambda128@candidate",
        "models:/ltchm-lambda512@candidate",
    ]
    other = tmp_path / "other.tif"  # a second scene: the batch goes on when one fails
    other.write_bytes(scene.read_bytes())
    for target, ok in ((1.0, 0), (80.0, 1)):
        out = tmp_path / f"out{target:g}"
        args = [str(scene), "--model", spec, "--tracking-uri", uri, "--out", str(out),
                "--local", "--no-progress", "--tile-size", "64", "--overlap", "8",
                "--target-psnr", str(target)]  # fmt: skip
        assert compress_main(args) == ok
        with open(out / "report.csv") as f:
            row = next(csv.DictReader(f))
        if ok:
            assert row["status"] == "failed" and "no rate point meets the target" in row["error"]
            continue
        assert row["status"] == "done" and float(row["target_psnr"]) == target
        assert row["target_met"] == "True;True" and row["unmet_tiles"] == ""
        assert sum(int(m.split(":")[1]) for m in row["tile_models"].split(";")) == 4
        tif = tmp_path / "dec.tif"
        assert decompress_main([str(out / "ms.ltcs"), str(tif), "--no-progress"]) == 0
