"""A ``.ltcs`` names the model that decodes it; ``decompress-scene`` finds it from the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

from jobs.compress_scenes import compress_scenes
from ltchm.codec import save_checkpoint
from ltchm.config import ScenesConfig
from ltchm.zoo import get_model
from pipeline.scenes.decompress import main


def test_decoded_from_the_model_the_file_names(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("LTCHM_MODEL_STORE", str(tmp_path / "store-1"))
    torch.manual_seed(0)
    model = get_model("ltchm-baseline", N=8, context="checkerboard")
    ckpt = tmp_path / "model.pt"
    save_checkpoint(model, ckpt, lmbda=512)
    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff", "height": 90, "width": 100, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": from_origin(500000, 4600000, 2.0, 2.0),
    }  # fmt: skip
    with rasterio.open(tmp_path / "s.tif", "w", **profile) as dst:
        dst.write(rng.integers(0, 255, (3, 90, 100), dtype=np.uint8))
    cfg = ScenesConfig(tile_size=64, overlap=8, verify=False)
    result = compress_scenes([tmp_path / "s.tif"], tmp_path / "out", str(ckpt), cfg,
                             use_ray=False, progress=False)  # fmt: skip
    assert not result.failed
    ltcs = tmp_path / "out" / "s.ltcs"

    assert main([str(ltcs), "--info"]) == 0
    info = json.loads(capsys.readouterr().out)["model"]
    assert info["source"] == str(ckpt.resolve()) and info["context"] == "checkerboard"
    assert info["lmbda"] == 512

    # another machine's store (empty): the file's own record of its model decodes it
    monkeypatch.setenv("LTCHM_MODEL_STORE", str(tmp_path / "store-2"))
    assert main([str(ltcs), str(tmp_path / "d.tif"), "--no-progress"]) == 0
    with rasterio.open(tmp_path / "d.tif") as ds:
        assert (ds.height, ds.width, ds.count) == (90, 100, 3)
    ckpt.unlink()  # gone as well: a clear error naming what to do
    assert main([str(ltcs), str(tmp_path / "e.tif")]) == 1
    assert "pass --model" in capsys.readouterr().err


def test_a_crafted_latent_size_is_refused_and_outputs_never_replace_inputs(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from pipeline.scenes.container import SceneReader, SceneWriter, pack_tile

    monkeypatch.setenv("LTCHM_MODEL_STORE", str(tmp_path / "store"))
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(get_model("ltchm-baseline", N=8, context="checkerboard"), ckpt, lmbda=512)
    profile = {
        "driver": "GTiff", "height": 70, "width": 80, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": from_origin(500000, 4600000, 2.0, 2.0),
    }  # fmt: skip
    with rasterio.open(tmp_path / "s.tif", "w", **profile) as dst:
        dst.write(np.random.default_rng(1).integers(0, 255, (3, 70, 80), dtype=np.uint8))
    cfg = ScenesConfig(tile_size=64, overlap=8, verify=False)
    result = compress_scenes([tmp_path / "s.tif"], tmp_path / "out", str(ckpt), cfg,
                             use_ray=False, progress=False)  # fmt: skip
    assert not result.failed
    ltcs = tmp_path / "out" / "s.ltcs"
    packed = ltcs.read_bytes()
    assert main([str(ltcs), str(ltcs)]) == 1  # would replace the compressed file
    assert "is the input file" in capsys.readouterr().err and ltcs.read_bytes() == packed

    with SceneReader(ltcs) as r:
        header, records = r.header, [r.tile(i) for i in range(len(r))]
    records[0].shape = (2000, 2000)
    crafted = tmp_path / "crafted.ltcs"
    with SceneWriter(crafted, header, len(records)) as w:
        for rec in records:
            w.add(pack_tile(rec))
        w.close()
    assert main([str(crafted), str(tmp_path / "c.tif"), "--model", str(ckpt), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "a 2000x2000 latent for a" in err and err.count("\n") == 1, err
    assert not (tmp_path / "c.tif").exists()
