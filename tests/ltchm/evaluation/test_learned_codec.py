"""The learned codec inside ``ltchm evaluate``: real files, real metrics, beside JPEG2000."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ltchm.cli import main as cli
from ltchm.codec import ImageCodec, load_checkpoint
from ltchm.evaluation.learned import LearnedCodec, ModelSpec
from ltchm.imageio import list_images, read_image, to_uint8


def test_adapter_codes_real_files(checkpoints, ucm_dir: Path) -> None:
    ckpt = str(checkpoints["checkerboard"])
    codec = LearnedCodec("ltchm", [ModelSpec(ckpt)])
    img = to_uint8(read_image(list_images(ucm_dir)[0]))
    data = codec.encode(img, ckpt)
    reference = ImageCodec(load_checkpoint(ckpt))
    assert data == reference.encode(read_image(list_images(ucm_dir)[0]))
    assert np.array_equal(codec.decode(data, ckpt, img.shape[:2]), to_uint8(reference.decode(data)))
    assert codec.identity(ckpt)["name"] == "ltchm"


def test_evaluate_learned_beside_jpeg2000(tmp_path: Path, checkpoints, ucm_dir: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for p in list_images(ucm_dir)[:2]:
        shutil.copy(p, data)
    out = tmp_path / "out"
    models = [f"ltchm={checkpoints['autoregressive']}", f"ltchm-cb={checkpoints['checkerboard']}"]
    argv = ["evaluate", "--models", *models, "--data", str(data), "--codecs", "jpeg2000"]
    argv += ["--out", str(out), "--no-lpips", "--no-mlflow", "--quiet", "--workers", "1"]
    assert cli(argv) == 0
    with open(out / "points.csv") as f:
        points = list(csv.DictReader(f))
    learned = [p for p in points if p["codec"] in ("ltchm", "ltchm-cb")]
    assert len(learned) == 2 * 2
    for p in learned:
        assert 0 < float(p["bpp"]) < 2 and np.isfinite(float(p["psnr"]))
        assert int(p["bytes"]) * 8 / (256 * 256) == pytest.approx(float(p["bpp"]))
    complexity = (out / "complexity.md").read_text()
    assert "ltchm" in complexity
    summary = json.loads((out / "summary.json").read_text())
    assert {c["name"] for c in summary["codecs"]} >= {"ltchm", "ltchm-cb", "jpeg2000"}


def test_evaluate_is_model_generic(tmp_path: Path, ucm_dir: Path) -> None:
    """An FDEGCNet checkpoint is a curve like any other: real files, its identity recorded."""
    import torch

    from ltchm.codec import save_checkpoint
    from ltchm.zoo import get_model

    torch.manual_seed(0)
    ckpt = tmp_path / "fdegcnet.pt"
    save_checkpoint(get_model("fdegcnet", N=16), ckpt, lmbda=512)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(list_images(ucm_dir)[0], data)
    out = tmp_path / "out"
    argv = ["evaluate", "--models", f"fdegcnet={ckpt}", "--data", str(data), "--codecs"]
    argv += ["jpeg2000", "--out", str(out), "--no-lpips", "--no-mlflow", "--quiet"]
    assert cli([*argv, "--workers", "1"]) == 0
    with open(out / "points.csv") as f:
        (point,) = [p for p in csv.DictReader(f) if p["codec"] == "fdegcnet"]
    assert int(point["bytes"]) * 8 / (256 * 256) == pytest.approx(float(point["bpp"]))
    assert np.isfinite(float(point["psnr"]))
    assert LearnedCodec("fdegcnet", [ModelSpec(str(ckpt))]).identity(str(ckpt))["name"] == (
        "fdegcnet"
    )
    assert "fdegcnet" in (out / "complexity.md").read_text()
