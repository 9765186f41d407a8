"""The scene batch job on real Ray: a folder and an archive of real GeoTIFFs with a broken one,
resumed by checksum, identical to the in-process run, and through ``ray job submit``."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from processes import VENV_BIN

from jobs.compress_scenes import main
from ltchm.paths import REPO_ROOT
from pipeline.scenes.container import SceneReader
from pipeline.scenes.decompress import main as decompress

pytestmark = pytest.mark.slow

SCENES = ["riocolor_rgb16.tif", "solaris_pan1.tif", "paddlers_ssst_multispectral.tif"]
# An untrained registry model (seed 0: every worker builds the same weights) keeps this fast;
# the quality of the codec is tested in tests/pipeline/scenes/test_codec.py.
CONFIG = """\
model: {name: ltchm-baseline, N: 8, context: checkerboard}
scenes: {tile_size: 256, overlap: 16, chunk_tiles: 2}
"""


@pytest.fixture(scope="module")
def inputs(scenes_dir, tmp_path_factory) -> dict[str, Path]:
    """A folder of real scenes plus a truncated one and a README; a zip with one scene."""
    root = tmp_path_factory.mktemp("inputs")
    folder = root / "archive"
    (folder / "sub").mkdir(parents=True)
    for name in SCENES:
        shutil.copy(scenes_dir / name, folder / "sub" / name)
    data = (scenes_dir / "rasterio_rgb1.tif").read_bytes()
    (folder / "broken.tif").write_bytes(data[: len(data) // 3])
    (folder / "README.txt").write_text("not a scene")
    zpath = root / "pieces.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(scenes_dir / "rasterio_rgb4.tif", "tiles/rgb4.tif")
    config = root / "scenes.yaml"
    config.write_text(CONFIG)
    return {"folder": folder, "zip": zpath, "config": config}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LTCHM_MODEL_STORE", str(tmp_path_factory.mktemp("store")))
        yield


def _args(inputs: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        str(inputs["folder"]), str(inputs["zip"]), "--model", "ltchm-baseline",
        "--config", str(inputs["config"]), "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def first_run(inputs, store, local_ray, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    assert main(_args(inputs, out, "--workers", "2")) == 1  # one scene is broken
    return out


def _report(out: Path) -> dict[str, dict]:
    rows = json.loads((out / "report.json").read_text())
    with open(out / "report.csv") as f:
        assert [r["scene"] for r in csv.DictReader(f)] == [r["scene"] for r in rows]
    return {r["scene"]: r for r in rows}


def _no_leftovers(out: Path) -> None:
    hidden = [p for p in out.rglob(".*") if p.is_file() and ".compress_scenes" not in p.parts]
    assert hidden == []


def test_batch_with_a_broken_scene_completes_the_others(first_run, inputs, scenes_dir):
    report = _report(first_run)
    assert set(report) == {
        "archive/broken.tif", "archive/sub/paddlers_ssst_multispectral.tif",
        "archive/sub/riocolor_rgb16.tif", "archive/sub/solaris_pan1.tif",
        "pieces.zip/tiles/rgb4.tif",
    }  # fmt: skip
    broken = report.pop("archive/broken.tif")
    assert broken["status"] == "failed" and "TIFFReadEncodedStrip" in broken["error"]
    assert not (first_run / "archive" / "broken.ltcs").exists()
    for key, row in report.items():
        assert row["status"] == "done", row
        out = first_run / row["output"]
        assert out.is_file() and out.stat().st_size == row["bytes"]
        assert row["bpp"] == pytest.approx(8 * row["bytes"] / (row["width"] * row["height"]), 1e-3)
        assert len(row["psnr_db"]) == row["bands"] and all(p > 0 for p in row["psnr_db"])
        assert row["psnr_min_db"] == min(row["psnr_db"])
        assert row["seconds"] > 0 and row["encode_seconds"] > 0 and row["verify_seconds"] > 0
        with SceneReader(out) as r:
            assert r.header.source.sha256 == row["source_sha256"] and r.header.source.name == key
    assert report["archive/sub/paddlers_ssst_multispectral.tif"]["bands"] == 10
    _no_leftovers(first_run)


def test_outputs_decode_to_the_sources_georeferencing(first_run, scenes_dir, tmp_path):
    """Through the CLI and the local model store the job filled (no --model)."""
    for ltcs, src in [("archive/sub/solaris_pan1.ltcs", "solaris_pan1.tif"),
                      ("pieces.zip/tiles/rgb4.ltcs", "rasterio_rgb4.tif")]:  # fmt: skip
        out = tmp_path / f"{Path(src).stem}.tif"
        assert decompress([str(first_run / ltcs), str(out), "--no-progress"]) == 0
        with rasterio.open(scenes_dir / src) as a, rasterio.open(out) as b:
            assert (b.crs, b.transform, b.shape, b.dtypes, b.nodatavals) == (
                a.crs, a.transform, a.shape, a.dtypes, a.nodatavals)  # fmt: skip
            assert np.array_equal(b.read_masks(), a.read_masks())


def test_rerun_skips_unchanged_scenes_and_redoes_changed_ones(first_run, inputs, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(first_run, out)
    folder = tmp_path / "archive"
    shutil.copytree(inputs["folder"], folder)
    args = _args({**inputs, "folder": folder}, out, "--workers", "1")
    pan = out / "archive/sub/solaris_pan1.ltcs"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.ltcs")}
    assert main(args) == 1
    report = _report(out)
    statuses = {k: r["status"] for k, r in report.items()}
    assert statuses.pop("archive/broken.tif") == "failed"  # retried, still broken
    assert set(statuses.values()) == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.ltcs")} == before
    # a changed source and a damaged output are redone; the rest stays skipped
    with rasterio.open(folder / "sub/riocolor_rgb16.tif", "r+") as ds:
        ds.update_tags(NOTE="edited")
    pan.write_bytes(pan.read_bytes()[:-100])
    assert main(args) == 1
    statuses = {k: r["status"] for k, r in _report(out).items()}
    assert statuses["archive/sub/riocolor_rgb16.tif"] == "done"
    assert statuses["archive/sub/solaris_pan1.tif"] == "done"
    assert statuses["archive/sub/paddlers_ssst_multispectral.tif"] == "skipped"
    with SceneReader(pan) as r:  # intact again
        assert r.header.tags.get("AREA_OR_POINT") == "Area"
    with SceneReader(out / "archive/sub/riocolor_rgb16.ltcs") as r:
        assert r.header.tags["NOTE"] == "edited"
    _no_leftovers(out)


def test_in_process_run_writes_identical_files(first_run, inputs, tmp_path):
    out = tmp_path / "local"
    assert main(_args(inputs, out, "--local", "--no-verify")) == 1
    for p in first_run.rglob("*.ltcs"):
        assert (out / p.relative_to(first_run)).read_bytes() == p.read_bytes(), p
    assert all(r["psnr_db"] is None for r in _report(out).values())


def test_bad_model_or_config_is_a_clear_error(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(inputs["folder"]), "--model", "nope", "--out", str(out)]) == 2
    assert "neither a checkpoint file" in capsys.readouterr().err
    args = [str(inputs["folder"]), "--model", "ltchm", "--out", str(out), "--overlap", "400"]
    assert main(args) == 2
    assert "overlap" in capsys.readouterr().err
    assert not list(out.rglob("*.ltcs")) if out.exists() else True


def test_an_output_folder_inside_the_input_folder_is_refused(inputs, capsys):
    out = inputs["folder"] / "compressed"
    assert main([str(inputs["folder"]), "--model", "ltchm", "--out", str(out), "--local"]) == 2
    err = capsys.readouterr().err
    assert "is inside the input folder" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_ray_job_submit_writes_the_same_tiles(first_run, inputs, ray_head, tmp_path):
    address, env = ray_head
    env["LTCHM_MODEL_STORE"] = str(tmp_path / "store")
    out = tmp_path / "submitted"
    scene = inputs["folder"] / "sub" / "solaris_pan1.tif"
    cmd = [
        str(VENV_BIN / "ray"), "job", "submit", "--address", address,
        "--working-dir", str(REPO_ROOT), "--",
        "python", "-m", "jobs.compress_scenes", str(scene), "--model", "ltchm-baseline",
        "--config", str(inputs["config"]), "--out", str(out), "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout + done.stderr
    # the same tiles; the header differs only in the scene's name (here a single file)
    with (
        SceneReader(out / "solaris_pan1.ltcs") as a,
        SceneReader(first_run / "archive/sub/solaris_pan1.ltcs") as b,
    ):
        assert a.header.source.name == "solaris_pan1.tif"
        same_source = b.header.source.model_copy(update={"name": "solaris_pan1.tif"})
        assert a.header == b.header.model_copy(update={"source": same_source})
        assert [a.tile_bytes(i) for i in range(len(a))] == [b.tile_bytes(i) for i in range(len(b))]


def test_registered_in_the_cli(capsys):
    from ltchm.cli import COMMANDS
    from ltchm.cli import main as cli

    assert COMMANDS["compress-scenes"][0] == "jobs.compress_scenes:main"
    assert COMMANDS["decompress-scene"][0] == "pipeline.scenes.decompress:main"
    for command, option in [("compress-scenes", "--chunk-tiles"), ("decompress-scene", "--bbox")]:
        with pytest.raises(SystemExit) as exit_:
            cli([command, "--help"])
        assert exit_.value.code == 0
        assert option in capsys.readouterr().out
