"""scripts/gpu_check.sh in its CPU mode: the GPU check's whole path, on the CPU."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
from pathlib import Path

from jobs.preprocess import preprocess
from ltchm.config import PreprocessConfig
from ltchm.paths import REPO_ROOT


def test_cpu_mode_trains_under_the_launcher_codes_and_reports(tmp_path, ucm_dir) -> None:
    shards = tmp_path / "shards"
    cfg = PreprocessConfig(tile_size=128, stride=128, split_seed=3)
    preprocess([ucm_dir], shards, cfg, use_ray=False, progress=False)
    out = tmp_path / "check"
    cmd = ["bash", "scripts/gpu_check.sh", "--out", str(out), "--cpu", "--steps", "3"]
    # small sizes keep the suite fast; the path is the GPU's
    cmd += ["--N", "32", "--batch-size", "2", "--patch-size", "64", "--loader-workers", "0"]
    cmd += ["--codec-images", "2", "--cross-images", "1", "--shards", str(shards)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["ok"] is True and report["environment"]["device"] == "cpu"
    fp32 = report["train_fp32"]
    assert fp32["exit_code"] == 0 and [s for s, _ in fp32["loss"]] == [1, 2, 3]
    assert fp32["images_per_s"] > 0 and fp32["time_to_first_step_s"] > 0
    assert Path(fp32["model"]).is_file()
    # bf16 (autocast) trains, registers, and its model is the one the codec stage times
    bf16 = report["train_bf16"]
    assert bf16["exit_code"] == 0 and [s for s, _ in bf16["loss"]] == [1, 2, 3]
    assert all(math.isfinite(v) for _, v in bf16["loss"] + bf16["bpp"])
    assert Path(bf16["model"]).is_file() and report["codec"]["model"] == bf16["model"]
    hours = report["paper_recipe_hours"]
    assert set(hours) == {"fp32", "bf16"} and hours["bf16"]["six_lambdas_one_gpu"] > 0
    for context in ("autoregressive", "checkerboard"):
        row = report["codec"][context]
        assert row["gpu_encoded_cpu_decoded_latents_identical"] is True
        assert row["encode_ms_median"] > 0 and row["decode_ms_median"] > 0 and row["bpp_mean"] > 0
    # no tracking: the metrics went to a JSON-lines file, nothing to an MLflow store
    metrics = out / "train-fp32" / "lambda_512" / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    assert [r["step"] for r in rows if "val_bpp" in r] == [3]  # validation at the last step
    assert not list(out.rglob("*.db")) and not (REPO_ROOT / "mlruns.db").exists()


def test_without_shards_it_says_how_to_make_them(tmp_path) -> None:
    cmd = ["bash", "scripts/gpu_check.sh", "--out", str(tmp_path), "--cpu"]
    cmd += ["--shards", str(tmp_path / "none")]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "scripts/gpu_bundle.sh" in proc.stderr


def test_the_paper_recipe_hours_from_a_measured_rate() -> None:
    spec = importlib.util.spec_from_file_location("gpu_check", REPO_ROOT / "scripts/gpu_check.py")
    assert spec is not None and spec.loader is not None
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    # the first H200 run: fp32 at 40.3 images/s; 1.6 M images per λ
    hours = check.paper_recipe_hours({"train_fp32": {"images_per_s": 40.3}, "train_bf16": {}})
    assert hours == {
        "fp32": {
            "one_lambda_one_gpu": 11.0,
            "six_lambdas_one_gpu": 66.2,
            "six_lambdas_eight_gpus_one_each": 11.0,
        }
    }
