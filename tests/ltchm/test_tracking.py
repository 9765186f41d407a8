"""``ltchm.tracking``: one resolution of the store for every command, experiments, URIs."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from ltchm.codec import load_model, save_checkpoint
from ltchm.tracking import (
    DEFAULT_TRACKING_URI,
    TrackingError,
    check_tracking,
    download_checkpoint,
    ensure_experiment,
    resolve_tracking_uri,
    using_tracking_uri,
)
from ltchm.zoo import get_model


def test_resolution_flag_then_environment_then_a_sqlite_file_here(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert DEFAULT_TRACKING_URI == "sqlite:///mlruns.db"
    assert resolve_tracking_uri(None, tmp_path) == f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri(None, tmp_path) == f"sqlite:///{tmp_path / 'env.db'}"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("store", tmp_path) == (tmp_path / "store").as_uri()
    assert resolve_tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"


def test_experiments_in_sqlite_keep_artifacts_beside_the_database(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'db' / 'm.db'}"
    (tmp_path / "db").mkdir()
    exp = ensure_experiment(uri, "e")
    assert ensure_experiment(uri, "e") == exp  # found, not created twice
    location = MlflowClient(uri).get_experiment(exp).artifact_location
    assert location == (tmp_path / "db" / "mlartifacts").resolve().as_uri()


def test_an_unusable_store_is_one_clear_error() -> None:
    with pytest.raises(TrackingError, match="cannot use the MLflow tracking store"):
        check_tracking("http://127.0.0.1:9")


def test_a_block_on_another_store_leaves_the_process_as_it_was(tmp_path, monkeypatch) -> None:
    user = f"sqlite:///{tmp_path / 'user.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user)
    with using_tracking_uri(f"sqlite:///{tmp_path / 'other.db'}"):
        assert mlflow.get_tracking_uri().endswith("other.db")
    assert os.environ["MLFLOW_TRACKING_URI"] == user and mlflow.get_tracking_uri() == user


def test_models_uris_resolve_where_training_registers(tmp_path, monkeypatch) -> None:
    """No --tracking-uri and no environment: the same sqlite:///mlruns.db as `ltchm train`."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = resolve_tracking_uri()
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(get_model("ltchm", N=8, context="checkerboard"), ckpt, lmbda=512)
    client = MlflowClient(uri)
    run = client.create_run(ensure_experiment(uri, "ltchm"))
    client.log_artifact(run.info.run_id, str(ckpt), "model")
    path = download_checkpoint(f"runs:/{run.info.run_id}/model")
    assert Path(path).read_bytes() == ckpt.read_bytes()
    assert load_model(f"runs:/{run.info.run_id}/model").lmbda == 512
