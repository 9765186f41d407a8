"""TCM through the platform's commands: ``ltchm train`` (real Ray, DeepSpeed, MLflow) for a
few steps, then ``ltchm encode`` / ``decode`` of a real file and ``ltchm evaluate``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jobs.preprocess import preprocess
from ltchm.cli import main
from ltchm.codec import ImageCodec, load_checkpoint
from ltchm.config import PreprocessConfig, load_config
from ltchm.imageio import list_images
from ltchm.models.tcm import TCM
from ltchm.paths import REPO_ROOT
from ltchm.zoo import model_from_config

# configs/tcm's recipe, shrunk to a few CPU steps
TRAIN_YAML = f"""\
extends: {REPO_ROOT / "configs" / "tcm" / "lambda_512.yaml"}
model: {{N: 32}}
train:
  steps: 3
  batch_size: 2
  patch_size: 64
  checkpoint_every: 3
  val_every: 3
  val_images: 1
  log_every: 1
  loader_workers: 0
  cpus_per_worker: null
tracking: {{system_metrics: false}}
data: {{shuffle_buffer: 8, epoch_length: 8}}
"""


@pytest.mark.parametrize("lmbda", [128, 256, 512, 1024, 2048, 4096])
def test_rate_point_configs(lmbda: int) -> None:
    cfg = load_config(REPO_ROOT / "configs" / "tcm" / f"lambda_{lmbda}.yaml", {"model.N": 32})
    assert (cfg.model.name, cfg.loss.lmbda, cfg.train.lr, cfg.train.batch_size) == (
        "tcm",
        lmbda,
        1e-4,
        8,
    )
    assert cfg.train.patch_size == 256 and cfg.tracking.registered_model == "tcm"
    assert isinstance(model_from_config(cfg.model), TCM)
    assert load_config(REPO_ROOT / "configs" / "tcm" / "recipe.yaml").model.N == 128


def test_train_encode_decode_evaluate(tmp_path: Path, ucm_dir: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LTCHM_MODEL_STORE", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    shards = tmp_path / "shards"
    cfg = PreprocessConfig(tile_size=128, stride=128, shard_max_bytes=400_000, split_seed=3)
    preprocess([ucm_dir], shards, cfg, use_ray=False, progress=False)
    (tmp_path / "tiny.yaml").write_text(TRAIN_YAML)
    argv = ["train", "--config", "tiny.yaml", "--shards", "shards", "--workers", "1"]
    assert main([*argv, "--out", "runs"]) == 0
    ckpt = tmp_path / "runs" / "lambda_512" / "model.pt"
    model = load_checkpoint(ckpt)
    assert isinstance(model, TCM) and model.N == 32 and model.ready()
    capsys.readouterr()

    # a real file of a size the model does not divide: padded, coded, cropped back
    rng = np.random.default_rng(0)
    pixels = np.cumsum(rng.integers(-8, 9, size=(70, 100, 3)), axis=1) % 256
    Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "x.png")
    assert main(["encode", "x.png", "x.ltc", "--model", str(ckpt)]) == 0
    assert main(["decode", "x.ltc", "y.png"]) == 0
    decoded = np.asarray(Image.open(tmp_path / "y.png"))
    expected = ImageCodec(load_checkpoint(ckpt)).decode((tmp_path / "x.ltc").read_bytes())
    assert decoded.shape == (70, 100, 3)
    assert np.array_equal(
        decoded, (expected.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    )
    assert torch.isfinite(expected).all()

    data = tmp_path / "data"
    data.mkdir()
    Image.open(list_images(ucm_dir)[0]).convert("RGB").save(data / "a.png")
    out = tmp_path / "eval"
    argv = ["evaluate", "--data", str(data), "--codecs", "jpeg", "--models", f"tcm={ckpt}"]
    argv += ["--out", str(out), "--no-lpips", "--no-mlflow", "--workers", "1", "--quiet"]
    assert main(argv) == 0
    with open(out / "points.csv") as f:
        points = list(csv.DictReader(f))
    tcm = [p for p in points if p["codec"] == "tcm"]
    assert len(tcm) == 1 and float(tcm[0]["bpp"]) > 0 and float(tcm[0]["psnr"]) > 0, points
    assert "tcm" in (out / "complexity.md").read_text()
