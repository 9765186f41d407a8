"""Training on a real local Ray cluster with real DeepSpeed, tracked in a real MLflow store."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import psutil
import pytest
from mlflow import MlflowClient

from jobs.preprocess import preprocess
from ltchm.cli import main
from ltchm.codec import ImageCodec, load_model
from ltchm.config import PreprocessConfig
from ltchm.imageio import list_images, read_image
from ltchm.paths import REPO_ROOT

TRAIN_YAML = """\
model: {N: 16}
loss: {lmbda: 512}
train:
  batch_size: 4
  patch_size: 64
  lr: 1.0e-3
  lr_drop_at: 1.0
  checkpoint_every: 10
  val_every: 20
  val_images: 2
  log_every: 1
  loader_workers: 0
  snapshot_every: 20
  cpus_per_worker: null
tracking: {system_metrics: false}
data: {shuffle_buffer: 32, epoch_length: 32}
"""


@pytest.fixture(scope="module")
def shards(tmp_path_factory, ucm_dir: Path) -> Path:
    """Shards of the dev UC-Merced images (train tiles of 128, whole val/test images)."""
    out = tmp_path_factory.mktemp("shards")
    cfg = PreprocessConfig(tile_size=128, stride=128, shard_max_bytes=400_000, split_seed=3)
    result = preprocess([ucm_dir], out, cfg, use_ray=False, progress=False)
    counts = result.manifest["counts"]
    assert counts["train"] and counts["val"], counts
    return out


@pytest.fixture
def train_config(tmp_path: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(TRAIN_YAML)
    return path


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns.db'}"


def _run(client: MlflowClient, name: str = "lambda_512"):
    exp = client.get_experiment_by_name("ltchm")
    (run,) = client.search_runs([exp.experiment_id], f"attributes.run_name = '{name}'")
    return run


def _train_workers(root: int) -> list[psutil.Process]:
    """The processes of Ray Train's worker actors under ``root`` (the job's own private Ray
    is its child): never another job's workers on the same machine, nor the DataLoader
    processes the actors fork (which carry the actor's name too)."""

    def is_worker(p: psutil.Process) -> bool:
        return "RayTrainWorker" in " ".join(p.cmdline())

    procs = []
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process(root).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                parent = p.parent()
                if is_worker(p) and not (parent is not None and is_worker(parent)):
                    procs.append(p)
    return procs


def _registered_checkpoints(run_dir: Path) -> list[dict]:
    """Checkpoints Ray Train has finished persisting (a folder alone may be mid-upload)."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return snapshot.get("checkpoint_results", [])


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """step -> value; a step re-run after a resume keeps its last value."""
    hist = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return {m.step: m.value for m in hist}


def test_two_workers_killed_while_checkpointing_resume_register_and_code(
    tmp_path, shards, train_config, ucm_dir, monkeypatch
) -> None:
    """2 DeepSpeed ranks on a local Ray, SIGKILLed while their second checkpoint is being
    written (DeepSpeed's files in the temporary folder Ray Train persists from, seen in the
    job's own TMPDIR): the run resumes from the first checkpoint, never a torn one, logs no
    step twice, leaves no checkpoint folder that is not registered, and registers a model
    that codes."""
    uri = _uri(tmp_path)
    out = tmp_path / "out"
    # short: Ray puts its sockets under TMPDIR too (AF_UNIX paths are limited to 107 bytes)
    tmp = Path(tempfile.mkdtemp(prefix="ck", dir="/tmp"))
    cmd = [sys.executable, "-m", "jobs.train", "--config", str(train_config)]
    cmd += ["--shards", str(shards), "--workers", "2", "--steps", "40", "--tracking-uri", uri]
    cmd += ["--out", str(out)]
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    run_dir = out / "ray" / "lambda_512"
    try:
        deadline = time.time() + 900
        while not _registered_checkpoints(run_dir):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "no checkpoint within 15 minutes"
            time.sleep(0.2)
        first = set(tmp.glob("tmp*"))  # the first checkpoint's, possibly not yet removed
        writing: list[Path] = []
        while not writing:  # the next checkpoint's temporary folder, once it has content
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "no second checkpoint within 15 minutes"
            new = [d for d in tmp.glob("tmp*") if d not in first and d.is_dir()]
            writing = [d for d in new if any(d.iterdir())]
            time.sleep(0.01)
        killed = _train_workers(proc.pid)
        for worker in killed:
            worker.send_signal(signal.SIGKILL)
        output = proc.communicate(timeout=900)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    assert killed and proc.returncode == 0, output[-3000:]
    assert "registered ltchm-lambda512 v1 @candidate" in output, output[-3000:]

    client = MlflowClient(uri)
    run = _run(client)
    rid = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.params["train.workers"] == "2" and run.data.params["loss.lmbda"] == "512.0"
    resumed = [int(v) for k, v in run.data.tags.items() if k.startswith("resumed_from_step")]
    assert resumed == [10], run.data.tags  # the previous checkpoint, never a torn one
    losses = _history(client, rid, "loss")
    assert sorted(losses) == list(range(1, 41))
    steps = [m.step for m in client.get_metric_history(rid, "loss")]
    assert len(steps) == len(set(steps)), "a step logged twice after the restart"
    # nothing but registered checkpoints left in Ray's storage
    registered = {c["checkpoint_dir_name"] for c in _registered_checkpoints(run_dir)}
    assert {p.name for p in run_dir.glob("checkpoint_*") if p.is_dir()} == registered
    first_losses, last = [losses[s] for s in range(1, 11)], [losses[s] for s in range(31, 41)]
    assert sum(last) < 0.7 * sum(first_losses), losses
    for key in ("bpp", "mse", "aux_loss", "lr", "val_bpp", "val_psnr", "val_bpp_estimated"):
        assert client.get_metric_history(rid, key), key
    # seconds per step on every logged step; the time from the command to the first step
    assert set(_history(client, rid, "seconds_per_step")) == set(range(1, 41))
    (first_step,) = _history(client, rid, "time_to_first_step_s").values()
    assert 1 < first_step < 900
    # codec snapshots every 20 steps (the one of step 20 rewritten after the resume)
    snaps = sorted(p.name for p in (out / "lambda_512" / "snapshots").glob("*.pt"))
    assert snaps == ["step_00000020.pt", "step_00000040.pt"], snaps
    snap = load_model(str(out / "lambda_512" / "snapshots" / snaps[0]))
    assert snap.checkpoint_metadata["step"] == 20
    artifacts = {a.path for a in client.list_artifacts(rid)}
    assert {"deepspeed_config.json", "config.json"} <= artifacts
    ds = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=rid, artifact_path="deepspeed_config.json", tracking_uri=uri
    )).read_text())  # fmt: skip
    assert ds["train_micro_batch_size_per_gpu"] == 2 and ds["optimizer"]["params"]["torch_adam"]
    # DeepSpeed checkpoints went through Ray Train; the last ones are kept
    ckpts = sorted(run_dir.glob("checkpoint_*"))
    assert ckpts and any((c / "latest").is_file() for c in ckpts)
    # registered with the alias 'candidate'; loads from the registry and codes at once
    version = client.get_model_version_by_alias("ltchm-lambda512", "candidate")
    assert str(version.version) == "1" and version.tags["lmbda"] == "512"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    model = load_model("models:/ltchm-lambda512@candidate")
    codec = ImageCodec(model)
    x = read_image(list_images(ucm_dir)[0])
    assert codec.decode(codec.encode(x)).shape == x.shape
    assert codec.identity.weights_hash.startswith(version.tags["weights_hash"][:16])
    # and the champion alias moves with 'ltchm promote'
    assert main(["promote", "ltchm-lambda512", "1", "--tracking-uri", uri]) == 0
    assert str(client.get_model_version_by_alias("ltchm-lambda512", "champion").version) == "1"
    assert main(["promote", "ltchm-lambda512", "7", "--tracking-uri", uri]) == 1


def test_bad_inputs_are_clear_errors(tmp_path, shards, train_config, capsys) -> None:
    uri = _uri(tmp_path)
    base = ["train", "--config", str(train_config), "--tracking-uri", uri, "--out", str(tmp_path)]
    assert main([*base, "--shards", str(tmp_path / "nowhere")]) == 2
    assert "shards not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*base, "--shards", str(empty)]) == 2
    assert "manifest" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stepz: 3}\n")
    assert main(["train", "--config", str(bad), "--shards", str(shards)]) == 2
    assert "train.stepz: unknown key" in capsys.readouterr().err
    t0 = time.time()
    argv = ["train", "--config", str(train_config), "--shards", str(shards)]
    assert main([*argv, "--tracking-uri", "http://127.0.0.1:9"]) == 2
    assert "cannot use the MLflow tracking store" in capsys.readouterr().err
    assert time.time() - t0 < 60  # before any training starts
    assert main([*argv, "--workers", "3", "--tracking-uri", uri]) == 2  # batch 4 over 3
    assert "not divisible" in capsys.readouterr().err


def test_shards_that_differ_from_their_manifest_fail_before_training(
    tmp_path, shards, train_config, capsys
) -> None:
    """Truncated, junk or replaced shards and a broken manifest: one line naming the file,
    before Ray or MLflow start (they used to fail minutes later inside a worker)."""
    uri = _uri(tmp_path)
    argv = ["train", "--config", str(train_config), "--tracking-uri", uri]
    (tmp_path / "file").write_text("x")
    assert main([*argv, "--shards", str(shards), "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'file'} is a file" in err
    assert main([*argv, "--shards", str(shards), "--out", str(shards / "runs")]) == 2
    assert "is inside the input folder" in capsys.readouterr().err
    manifest = json.loads((shards / "manifest.json").read_text())
    name = next(s["name"] for s in manifest["shards"] if s["split"] == "train")
    for case in ("truncated", "junk", "manifest"):
        copy = tmp_path / case
        shutil.copytree(shards, copy)
        tar = copy / name
        if case == "truncated":
            tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
            says = "truncated or replaced"
        elif case == "junk":
            tar.write_bytes(bytes(tar.stat().st_size))  # same size, other bytes
            says = "sha256 differs from the manifest"
        else:
            (copy / "manifest.json").write_text("{not json")
            says = "not a valid manifest"
        t0 = time.time()
        assert main([*argv, "--shards", str(copy), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert says in err and str(copy) in err and err.count("\n") == 1, err
        assert time.time() - t0 < 30
    assert not (tmp_path / "mlruns.db").exists()  # nothing started


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, shards, capsys) -> None:
    cfg = tmp_path / "nan.yaml"
    # Sound steps 1-3, then an absurd learning rate (weights ~1e30 after one Adam step)
    # overflows the network: the loss or the weights are non-finite from step 4 on.
    cfg.write_text(TRAIN_YAML.replace("lr_drop_at: 1.0", "lr_drop_at: 0.5\n  lr_final: 1.0e+30"))
    argv = ["train", "--config", str(cfg), "--shards", str(shards), "--workers", "1"]
    argv += ["--steps", "6", "--checkpoint-every", "1", "--val-every", "1000"]
    argv += ["--tracking-uri", _uri(tmp_path), "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    pattern = r"non-finite (loss|weights) at step (\d+).*last good checkpoint is (\S+)"
    found = re.search(pattern, err)
    assert found and int(found[2]) >= 4, err[-2000:]
    run = _run(MlflowClient(_uri(tmp_path)))
    assert run.info.status == "FAILED" and "non-finite" in run.data.tags["ltchm.error"]
    # the last good checkpoint is kept, and it is the one of step 3 at the latest
    snapshot = _registered_checkpoints(tmp_path / "out" / "ray" / "lambda_512")
    assert snapshot and max(c["metrics"]["step"] for c in snapshot) <= int(found[2]) - 1
    assert Path(found[3].rstrip(".,")).is_dir()


def test_one_store_from_preprocess_to_decode_in_a_fresh_folder(
    tmp_path, ucm_dir, monkeypatch, capsys
) -> None:
    """The README's sequence with no environment variable: every command finds the store
    'ltchm train' registered into; a command that only reads never creates one. Validation
    in between, and the registered model codes a real file."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TRAIN_YAML)
    argv = ["preprocess", str(ucm_dir), "--out", "shards", "--local", "--no-progress"]
    argv += ["--tile-size", "128", "--stride", "128", "--split-seed", "3"]
    assert main(argv) == 0
    argv = ["train", "--config", "tiny.yaml", "--shards", "shards", "--workers", "1"]
    assert main([*argv, "--steps", "10", "--val-every", "5", "--out", "runs"]) == 0
    assert (tmp_path / "mlruns.db").is_file()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    run = _run(client)
    losses = _history(client, run.info.run_id, "loss")
    assert sorted(losses) == list(range(1, 11)) and all(map(math.isfinite, losses.values()))
    assert sorted(_history(client, run.info.run_id, "val_psnr")) == [5, 10]
    # the live line of the rate point, fed by the worker's metrics, ends at its last step
    assert re.search(r"λ 512: step 10/10 \| loss [\d.]+ \| bpp [\d.]+", capsys.readouterr().err)
    assert main(["promote", "ltchm-lambda512", "1"]) == 0
    image = str(list_images(ucm_dir)[0])
    assert main(["encode", image, "a.ltc", "--model", "models:/ltchm-lambda512@champion"]) == 0
    assert main(["decode", "a.ltc", "a.png"]) == 0
    assert read_image(tmp_path / "a.png").shape == read_image(image).shape
    assert not (tmp_path / "mlflow.db").exists()
    capsys.readouterr()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = "models:/ltchm-lambda512@champion"
    assert main(["encode", image, "b.ltc", "--model", spec]) == 1
    assert "no MLflow store" in capsys.readouterr().err
    assert not any(elsewhere.iterdir())  # reading created nothing
    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert main(["encode", image, "b.ltc", "--model", spec, "--tracking-uri", store]) == 0
    capsys.readouterr()
    bad = ["--model", "models:/ltchm-lambda512@nope", "--tracking-uri", store]
    assert main(["encode", image, "c.ltc", *bad]) == 1
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1, err


def test_unregistered_checkpoint_folders_are_removed(tmp_path) -> None:
    from jobs.train import remove_orphan_checkpoints

    run = tmp_path / "lambda_512"
    for name in ("checkpoint_a", "checkpoint_b", "checkpoint_half"):
        (run / name).mkdir(parents=True)
        (run / name / "x").write_text("x")
    snapshot = {
        "checkpoint_results": [{"checkpoint_dir_name": n} for n in ("checkpoint_a", "checkpoint_b")]
    }
    (run / "checkpoint_manager_snapshot.json").write_text(json.dumps(snapshot))
    assert remove_orphan_checkpoints(run) == ["checkpoint_half"]
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint_a", "checkpoint_b", "checkpoint_manager_snapshot.json"
    ]  # fmt: skip
    (run / "checkpoint_manager_snapshot.json").write_text("{half written")
    (run / "checkpoint_c").mkdir()
    assert remove_orphan_checkpoints(run) == []  # Ray's state unreadable: nothing touched
    assert remove_orphan_checkpoints(tmp_path / "nowhere") == []


def test_a_shard_failing_mid_run_stops_the_run_with_one_line_naming_it(
    tmp_path, shards, capsys
) -> None:
    """Checksums skipped (``data.verify_shards: false`` checks the first and last shard):
    the middle train shards are junk of the right size. The run stops at the first one read
    with one line naming it, also from a DataLoader worker process, and without restarting
    the worker group (the same bytes would fail again)."""
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    train = [s["name"] for s in manifest["shards"] if s["split"] == "train"]
    assert len(train) >= 3
    rng = np.random.default_rng(0)
    for name in train[1:-1]:
        tar = copy / name
        tar.write_bytes(rng.integers(0, 256, tar.stat().st_size, np.uint8).tobytes())
    cfg = tmp_path / "noverify.yaml"
    yaml = TRAIN_YAML.replace("loader_workers: 0", "loader_workers: 1")
    cfg.write_text(yaml.replace("epoch_length: 32}", "epoch_length: 32, verify_shards: false}"))
    argv = ["train", "--config", str(cfg), "--shards", str(copy), "--workers", "1"]
    argv += ["--steps", "40", "--tracking-uri", _uri(tmp_path), "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("lambda")]
    assert re.search(r"training failed: shard \S+/train-\d+\.tar cannot be read: ReadError", line)
    assert any(name in line for name in train[1:-1]), line
    assert "Traceback" not in err, err[-3000:]
    # the worker stopped the run itself: a corrupt shard is not worth Ray Train's restarts
    run = _run(MlflowClient(_uri(tmp_path)))
    assert run.info.status == "FAILED"
    assert json.loads(run.data.tags["ltchm.stopped"])["data_error"] in line


def test_fdegcnet_trains_registers_and_codes(tmp_path, shards, ucm_dir, capsys) -> None:
    """Another model of the zoo through the same command: a few steps, registered under its
    own name, and the registered model codes a real file."""
    cfg = tmp_path / "fdegcnet.yaml"
    text = TRAIN_YAML.replace("model: {N: 16}", "model: {name: fdegcnet, N: 16}")
    cfg.write_text(text.replace("tracking: {", "tracking: {registered_model: fdegcnet, "))
    uri = _uri(tmp_path)
    argv = ["train", "--config", str(cfg), "--shards", str(shards), "--workers", "1"]
    argv += ["--steps", "4", "--tracking-uri", uri, "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    client = MlflowClient(uri)
    losses = _history(client, _run(client).info.run_id, "loss")
    assert sorted(losses) == [1, 2, 3, 4] and all(map(math.isfinite, losses.values()))
    spec = "models:/fdegcnet-lambda512@candidate"
    model = load_model(spec, tracking_uri=uri)
    assert type(model).__name__ == "FDEGCNet" and model.N == 16
    image = list_images(ucm_dir)[0]
    ltc, png = tmp_path / "a.ltc", tmp_path / "a.png"
    assert main(["encode", str(image), str(ltc), "--model", spec, "--tracking-uri", uri]) == 0
    assert main(["decode", str(ltc), str(png), "--tracking-uri", uri]) == 0
    assert read_image(png).shape == read_image(image).shape


def test_run_params_name_only_the_keys_the_model_takes() -> None:
    from jobs.train import run_params
    from ltchm.config import load_config

    tcm = run_params(load_config(REPO_ROOT / "configs" / "tcm" / "lambda_512.yaml"))
    assert tcm["model.name"] == "tcm" and tcm["model.N"] == "128"
    assert not {"model.mixture", "model.K", "model.dam_layout"} & tcm.keys()
    assert tcm["loss.lmbda"] == "512.0"
    ltchm = run_params(load_config(REPO_ROOT / "configs" / "lambda_512.yaml"))
    assert ltchm["model.mixture"] == "gaussian" and "model.dam_layout" in ltchm
