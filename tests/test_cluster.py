"""The platform on a real two-node Ray cluster and an MLflow tracking server, on one machine.

A Ray head and a second Ray node are separate ``ray start`` processes (one CPU each, so a
2-worker training puts one DeepSpeed rank on each node); an ``mlflow server`` with a SQLite
backend and a local artifact root is the tracking server. Preprocessing, training and the
scene job are submitted with ``ray job submit``, as on a real cluster.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest
import rasterio
from mlflow import MlflowClient
from processes import VENV_BIN, free_port, ray_nodes, stop, wait_for

from ltchm.paths import REPO_ROOT
from pipeline.scenes.decompress import main as decompress_scene

TRAIN_YAML = """\
model: {N: 8}
train:
  batch_size: 2
  patch_size: 64
  lr: 1.0e-3
  checkpoint_every: 2
  val_every: 4
  val_images: 1
  log_every: 1
  loader_workers: 0
tracking: {system_metrics: false}
data: {shuffle_buffer: 8, epoch_length: 8}
"""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server``: SQLite backend store, local artifact root served by the server."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = root / "server.log"
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
            "--workers", "1",
        ],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _http_ok(f"{uri}/health"), proc, "mlflow server", timeout=120)
        yield uri
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A head and a second node, one CPU each, with their own temp dir and auth token."""
    with ray_nodes(tmp_path_factory.mktemp("ray"), cpus=[1, 1]) as cluster:
        yield cluster


def _submit(cluster, args: list[str], env_vars: dict[str, str] | None = None, timeout=900):
    address, env = cluster
    cmd = [str(VENV_BIN / "ray"), "job", "submit", "--address", address]
    cmd += ["--working-dir", str(REPO_ROOT)]
    if env_vars:
        cmd += ["--runtime-env-json", json.dumps({"env_vars": env_vars})]
    cmd += ["--", "python", "-m", *args]
    done = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in output, output[-4000:]
    return output


def test_two_nodes_preprocess_train_and_compress_scenes(
    ray_cluster, mlflow_server, tmp_path, ucm_dir, dev_dir, monkeypatch
) -> None:
    # 1. preprocessing, submitted to the cluster
    shards = tmp_path / "shards"
    _submit(
        ray_cluster,
        ["jobs.preprocess", str(ucm_dir), "--out", str(shards), "--tile-size", "128",
         "--no-progress"],
    )  # fmt: skip
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["counts"]["train"] and manifest["shards"]

    # 2. training with one DeepSpeed rank on each node, tracked in the MLflow server
    config = tmp_path / "train.yaml"
    config.write_text(TRAIN_YAML)
    out = tmp_path / "runs"
    _submit(
        ray_cluster,
        ["jobs.train", "--lambdas", "512", "--config", str(config), "--shards", str(shards),
         "--workers", "2",
         "--steps", "4", "--tracking-uri", mlflow_server, "--out", str(out)],
    )  # fmt: skip
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("ltchm")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    nodes = json.loads(run.data.tags["ltchm.rank_nodes"])
    assert len(nodes) == 2 and len(set(nodes)) == 2, nodes  # one rank per node
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == 4
    version = client.get_model_version_by_alias("ltchm-lambda512", "candidate")
    assert version.tags["lmbda"] == "512"
    # the artifacts live in the server's artifact root, not on the client
    assert client.get_run(run.info.run_id).info.artifact_uri.startswith("mlflow-artifacts:")

    # 3. the scene job codes a georeferenced scene with the registered model, on the cluster
    scene = dev_dir / "scenes" / "rasterio_rgb1.tif"
    compressed = tmp_path / "scenes"
    model = "models:/ltchm-lambda512@candidate"
    _submit(
        ray_cluster,
        ["jobs.compress_scenes", str(scene), "--model", model, "--out", str(compressed),
         "--no-progress"],
        env_vars={"MLFLOW_TRACKING_URI": mlflow_server},
    )  # fmt: skip
    report = json.loads((compressed / "report.json").read_text())
    assert [r["status"] for r in report] == ["done"], report
    ltcs = compressed / report[0]["output"]
    decoded = tmp_path / "decoded.tif"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    assert decompress_scene([str(ltcs), str(decoded), "--model", model]) == 0
    with rasterio.open(decoded) as a, rasterio.open(scene) as b:
        for attr in ("crs", "transform", "shape", "count", "dtypes", "nodata"):
            assert getattr(a, attr) == getattr(b, attr), attr
