"""``ltchm demo``, the README's first command, end to end on a small copy of the dev data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
import rasterio
from mlflow import MlflowClient

from ltchm.cli import main
from ltchm.config import LAMBDAS
from ltchm.imageio import list_images


def test_demo_end_to_end(tmp_path: Path, dev_dir: Path, monkeypatch, capsys) -> None:
    # the same layout as ../shared/data/dev, fewer and smaller files, so the test is quick
    dev = tmp_path / "dev"
    (dev / "ucm").mkdir(parents=True)
    for p in list_images(dev_dir / "ucm")[:6]:
        shutil.copy(p, dev / "ucm")
    (dev / "scenes").mkdir()
    for name in ("riocolor_rgb16.tif", "rasterio_rgb1.tif"):
        shutil.copy(dev_dir / "scenes" / name, dev / "scenes")
    monkeypatch.setenv("LTCHM_DEV_DATA", str(dev))
    caller_store = f"sqlite:///{tmp_path / 'caller.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", caller_store)
    before = mlflow.get_tracking_uri()
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--steps", "2", "--eval-images", "1"]
    assert main(argv) == 0
    # the demo's store was the process's only while it ran: later models:/ loads in the
    # same process (a notebook, the rest of this suite) resolve against the caller's
    assert os.environ["MLFLOW_TRACKING_URI"] == caller_store
    assert mlflow.get_tracking_uri() == before
    text = capsys.readouterr().out
    assert "Summary" in text and "RD plot" in text and "MLflow store" in text
    # each scene beside JPEG2000 at the same bytes, so no one mistakes the demo's models
    assert "JPEG2000 (OpenJPEG) at the same bytes" in text
    assert "JPEG2000 at equal bytes here" in text and "not of the codec's quality" in text

    # every stage left its real product
    assert (out / "raw" / "UCMerced_LandUse.zip").is_file()
    assert (out / "shards" / "manifest.json").is_file()
    # the six rate points: one parent run, six children, six registered versions
    client = MlflowClient(f"sqlite:///{out / 'mlruns.db'}")
    exp = client.get_experiment_by_name("ltchm")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("ltchm.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(float(r.data.params["loss.lmbda"]) for r in children) == list(LAMBDAS)
    assert {r.data.params["model.N"] for r in children} == {"16"}
    assert parent.info.status == "FINISHED" and all(r.info.status == "FINISHED" for r in children)
    for lmbda in LAMBDAS:
        version = client.get_model_version_by_alias(f"ltchm-lambda{lmbda}", "candidate")
        assert str(version.version) == "1" and version.tags["lmbda"] == str(lmbda)
    assert (out / "evaluation" / "bd.md").is_file()
    assert list((out / "evaluation").glob("*.png"))
    decoded = sorted((out / "scenes" / "decoded").glob("*.tif"))
    assert len(decoded) == 2
    for tif in decoded:
        src_name = "riocolor_rgb16.tif" if "rgb16" in tif.name else "rasterio_rgb1.tif"
        with rasterio.open(tif) as a, rasterio.open(dev / "scenes" / src_name) as b:
            for attr in ("crs", "transform", "shape", "dtypes", "nodata"):
                assert getattr(a, attr) == getattr(b, attr), (tif.name, attr)
