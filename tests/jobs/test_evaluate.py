import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import webdataset as wds
from mlflow.tracking import MlflowClient
from PIL import Image

from ltchm.cli import COMMANDS
from ltchm.cli import main as cli

IMAGES = ("airplane00.tif", "forest00.tif")


@pytest.fixture
def data(tmp_path: Path, ucm_dir: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for name in IMAGES:
        shutil.copy(ucm_dir / name, folder)
    return folder


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def test_registered() -> None:
    assert COMMANDS["evaluate"][0] == "jobs.evaluate:main"


def test_end_to_end_with_mlflow(tmp_path: Path, data: Path, weights: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the cwd
    out = tmp_path / "out"
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    argv = ["evaluate", "--data", str(data), "--codecs", "jpeg2000,webp", "--out", str(out)]
    argv += ["--lpips-weights", str(weights), "--tracking-uri", uri, "--quiet"]
    assert cli(argv) == 0

    with open(out / "points.csv") as f:
        points = list(csv.DictReader(f))
    assert len(points) == 2 * 12
    assert {p["image"] for p in points} == set(IMAGES)
    assert {p["codec"] for p in points} == {"jpeg2000", "webp"}
    for p in points:
        for key in ("bpp", "psnr", "ms_ssim", "ms_ssim_db", "lpips", "vifp"):
            assert np.isfinite(float(p[key])), (key, p)
        assert int(p["bytes"]) * 8 / (256 * 256) == pytest.approx(float(p["bpp"]))
    assert len(json.loads((out / "points.json").read_text())) == 24
    rd = json.loads((out / "rd.json").read_text())
    assert len(rd) == 12 and all(r["images"] == 2 for r in rd)
    for metric in ("psnr", "ms_ssim_db", "lpips", "vifp"):
        assert (out / f"rd_{metric}.png").read_bytes()[:4] == b"\x89PNG"
        assert b"<svg" in (out / f"rd_{metric}.svg").read_bytes()
    bd = (out / "bd.md").read_text()
    assert "| JPEG2000 (OpenJPEG) | +0.00 % | +0.00 dB |" in bd and "| WebP (libwebp) |" in bd
    assert "| JPEG (libjpeg-turbo)" not in (out / "complexity.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 2 and summary["lpips"]["weights"] == str(weights)
    assert summary["codecs"][0]["ladder"] == [160, 110, 60, 40, 30, 20]

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ltchm")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["ltchm.kind"] == "evaluation-comparison"
    assert run.data.params["codecs"] == "jpeg2000,webp" and run.data.params["images"] == "2"
    assert run.data.metrics["bd_rate_psnr.jpeg2000"] == pytest.approx(0.0, abs=1e-9)
    assert "bd_rate_psnr.webp" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "rd.webp.psnr")) == 6
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"bd.md", "bd.csv", "rd.csv", "points.json", "rd_lpips.svg", "report.md"} <= artifacts


def test_shards_without_lpips_or_mlflow(tmp_path: Path, ucm_dir: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    shards = tmp_path / "shards"
    shards.mkdir()
    with wds.TarWriter(str(shards / "test-000000.tar")) as sink:
        for name in IMAGES:
            buf = io.BytesIO()
            Image.open(ucm_dir / name).convert("RGB").save(buf, format="PNG")
            sink.write({"__key__": Path(name).stem, "png": buf.getvalue(), "json": b"{}"})
    out = tmp_path / "out"
    argv = ["evaluate", "--data", str(shards), "--codecs", "jpeg", "--out", str(out), "--quiet"]
    argv += ["--no-mlflow", "--no-complexity", "--workers", "1", "--max-images", "1"]
    # A weights file the user names must be there: a clear refusal, nothing written.
    assert cli([*argv, "--lpips-weights", str(tmp_path / "nope.pth")]) == 1
    assert "AlexNet weights file not found" in capsys.readouterr().err
    assert not out.exists()
    # No AlexNet weights anywhere: LPIPS is n/a with one notice, never random-weight LPIPS.
    assert cli(argv) == 0
    assert capsys.readouterr().out.count("LPIPS reported as n/a") == 1
    assert "LPIPS n/a" in (out / "report.md").read_text()
    assert cli([*argv, "--no-lpips"]) == 0
    assert "LPIPS reported as n/a" not in capsys.readouterr().out
    with open(out / "points.csv") as f:
        points = list(csv.DictReader(f))
    assert [p["image"] for p in points] == ["airplane00"] * 6
    assert all(p["lpips"] == "nan" for p in points)
    assert not (out / "rd_lpips.png").exists() and (out / "rd_psnr.svg").exists()
    assert not (out / "complexity.md").exists()
    assert "No BD table" in (out / "bd.md").read_text()
    assert not (tmp_path / "mlruns.db").exists()


def test_clear_errors(tmp_path: Path, data: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "out"
    base = ["evaluate", "--data", str(data), "--out", str(out), "--no-lpips", "--no-mlflow"]
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli([*base, "--codecs", "jpeg2000"]) == 1
    err = capsys.readouterr().err
    assert "'opj_compress'" in err and "libopenjp2-tools" in err
    monkeypatch.undo()
    assert cli([*base, "--codecs", "jpeg2000,bpg"]) == 1
    assert "unknown codec(s) ['bpg']" in capsys.readouterr().err
    assert cli([*base, "--codecs", "none"]) == 1
    assert "nothing to evaluate" in capsys.readouterr().err
    assert cli([*base[:2], str(tmp_path / "nowhere"), *base[3:], "--codecs", "jpeg"]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert not out.exists()


def test_one_command_compares_models_on_one_plot(tmp_path: Path, data: Path, capsys) -> None:
    """LABEL=SOURCE pairs of different zoo models: one RD plot, a BD row per curve vs JPEG2000."""
    cfgs = []
    for n in (16, 24):  # two untrained widths: two distinct points per curve
        cfg = tmp_path / f"n{n}.yaml"
        cfg.write_text(f"model:\n  N: {n}\nloss:\n  lmbda: {n * 16}\n")
        cfgs.append(cfg)
    models = [f"{name}={name},config={c}" for name in ("ltchm", "cheng2020-attn") for c in cfgs]
    out = tmp_path / "out"
    argv = ["evaluate", "--data", str(data), "--codecs", "jpeg2000", "--out", str(out)]
    argv += ["--no-lpips", "--no-mlflow", "--no-complexity", "--max-images", "1", "--quiet"]
    assert cli([*argv, "--models", *models]) == 0

    with open(out / "rd.csv") as f:
        rd = list(csv.DictReader(f))
    assert {r["codec"] for r in rd} == {"jpeg2000", "ltchm", "cheng2020-attn"}
    assert sum(r["codec"] == "ltchm" for r in rd) == 2
    assert sum(r["codec"] == "cheng2020-attn" for r in rd) == 2
    svg = (out / "rd_psnr.svg").read_text()
    assert "ltchm (learned)" in svg and "cheng2020-attn (learned)" in svg and "JPEG2000" in svg
    with open(out / "bd.csv") as f:
        bd = {r["codec"]: r for r in csv.DictReader(f)}
    assert set(bd) == {"jpeg2000", "ltchm", "cheng2020-attn"}

    # a malformed pair is a one-line error before anything runs
    capsys.readouterr()
    shutil.rmtree(out)
    assert cli([*argv, "--models", "=x.pt"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no label before '='" in err
    assert not out.exists()
