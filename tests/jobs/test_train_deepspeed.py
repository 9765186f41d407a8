"""Training without Ray: two ranks started by DeepSpeed's own launcher, killed and relaunched."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from jobs.preprocess import preprocess
from ltchm.codec import ImageCodec, load_checkpoint
from ltchm.config import PreprocessConfig
from ltchm.imageio import list_images, read_image
from ltchm.paths import REPO_ROOT

CONFIG = """\
model: {N: 8}
loss: {lmbda: 256}
train:
  batch_size: 4
  patch_size: 64
  lr: 1.0e-3
  checkpoint_every: 3
  val_every: 6
  val_images: 1
  log_every: 1
  loader_workers: 0
tracking: {system_metrics: false}
data: {shuffle_buffer: 16, epoch_length: 16}
"""


@pytest.fixture(scope="module")
def shards(tmp_path_factory, ucm_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("shards")
    cfg = PreprocessConfig(tile_size=128, stride=128, shard_max_bytes=400_000, split_seed=3)
    preprocess([ucm_dir], out, cfg, use_ray=False, progress=False)
    return out


def _ranks() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = p.info["cmdline"] or []
        except psutil.Error:
            continue
        if "jobs.train_deepspeed" in cmd and any(a.startswith("--local_rank") for a in cmd):
            found.append(p)
    return found


def test_launcher_ranks_resume_after_a_kill_and_register(tmp_path, shards, ucm_dir) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(CONFIG)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    out = tmp_path / "runs"
    # No hostfile: the launcher runs its ranks on this machine. (With a hostfile it reaches
    # every host, localhost too, over passwordless SSH, which a CI machine does not have.)
    cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2"]
    cmd += ["--module", "jobs.train_deepspeed", "--config", str(config), "--shards", str(shards)]
    cmd += ["--steps", "6", "--tracking-uri", uri, "--out", str(out)]
    ckpt_dir = out / "lambda_256" / "deepspeed"

    first = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 900
        while not (ckpt_dir / "latest").is_file():
            assert first.poll() is None, first.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "no checkpoint within 15 minutes"
            time.sleep(0.2)
        ranks = _ranks()
        assert len(ranks) == 2, ranks
        ranks[-1].send_signal(signal.SIGKILL)  # the launcher then stops the other rank too
        first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode != 0
    saved_at = int((ckpt_dir / "latest").read_text().strip().removeprefix("step"))
    assert 3 <= saved_at < 6

    # the same command again: it continues the same MLflow run from the last checkpoint
    second = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    assert "registered ltchm-lambda256 v1 @candidate" in second.stdout, second.stdout[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ltchm")
    (run,) = client.search_runs([exp.experiment_id])
    resumed = [int(v) for k, v in run.data.tags.items() if k.startswith("resumed_from_step")]
    assert resumed == [saved_at], run.data.tags
    assert run.info.status == "FINISHED" and run.data.params["train.workers"] == "2"
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == 6
    assert client.get_metric_history(run.info.run_id, "val_bpp")
    # the consolidated fp32 weights code an image
    codec = ImageCodec(load_checkpoint(out / "lambda_256" / "model.pt"))
    x = read_image(list_images(ucm_dir)[0])
    assert codec.decode(codec.encode(x)).shape == x.shape


def test_launcher_bad_input_stops_every_rank_with_a_clear_error(tmp_path) -> None:
    cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2"]
    cmd += ["--module", "jobs.train_deepspeed", "--config", "configs/lambda_512.yaml"]
    cmd += ["--shards", str(tmp_path / "nowhere"), "--out", str(tmp_path / "runs")]
    cmd += ["--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "shards not found" in proc.stdout + proc.stderr


def _one_rank_untracked(config: Path, shards: Path, out: Path, steps: int) -> list[str]:
    """The launcher command for one local rank without MLflow."""
    cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "1", "--module"]
    cmd += ["jobs.train_deepspeed", "--config", str(config), "--shards", str(shards)]
    return [*cmd, "--steps", str(steps), "--out", str(out), "--no-tracking"]


def test_launcher_without_tracking_fine_tunes_from_a_checkpoint_at_zero_stage_0(
    tmp_path, shards, ucm_dir
) -> None:
    """``train.init_from``: a rate point starts from another model's weights (here with a
    learning rate too small to move them, so the result must be those weights), at the CPU
    recipe's ZeRO stage 0 (no optimiser shards in its checkpoints): the model written is the
    one trained, and it codes."""
    import torch

    from ltchm.codec import save_checkpoint
    from ltchm.zoo import get_model

    torch.manual_seed(123)
    start = get_model("ltchm", N=8)
    # CompressAI's masked convolution zeroes its masked taps in place at every forward; at
    # ZeRO stage 0 the optimiser steps the module's own tensors, so those zeros stay
    with torch.no_grad():
        start.context_model.conv.weight.mul_(start.context_model.conv.mask)
    init = tmp_path / "start.pt"
    save_checkpoint(start, init, lmbda=1024)
    config = tmp_path / "ft.yaml"
    config.write_text(
        CONFIG.replace(
            "lr: 1.0e-3", f"lr: 1.0e-30\n  lr_final: 1.0e-30\n  init_from: {init}"
        ).replace("checkpoint_every: 3", "checkpoint_every: 2")
        + "deepspeed: {zero_stage: 0}\n"
    )
    out = tmp_path / "runs"
    cmd = _one_rank_untracked(config, shards, out, steps=2)
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    tuned = load_checkpoint(out / "lambda_256" / "model.pt")
    expected = load_checkpoint(init).state_dict()
    for name, value in tuned.state_dict().items():
        if name.endswith(("weight", "bias")) and "entropy_bottleneck" not in name:
            assert torch.allclose(value, expected[name], atol=1e-6), name
    assert not list(tmp_path.rglob("*.db"))  # --no-tracking: no MLflow store anywhere
    tag = out / "lambda_256" / "deepspeed" / "step00000002"
    assert not list(tag.glob("*zero_pp_rank*"))  # stage 0 indeed: no optimiser shards
    saved = torch.load(tag / "mp_rank_00_model_states.pt", weights_only=True)["module"]
    # the weights, quantiles included (the coding tables are built at registration)
    params = dict(tuned.named_parameters())
    assert params.keys() <= saved.keys()
    assert all(torch.equal(p, saved[k]) for k, p in params.items())
    codec = ImageCodec(tuned)
    x = read_image(list_images(ucm_dir)[0])
    assert codec.decode(codec.encode(x)).shape == x.shape
    # a missing init_from is a clear error before any training
    config.write_text(CONFIG.replace("lr: 1.0e-3", f"init_from: {tmp_path / 'nope.pt'}"))
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "no such checkpoint" in proc.stdout + proc.stderr
