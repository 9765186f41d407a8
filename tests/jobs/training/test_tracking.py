"""Registering a model must not re-point later ``models:/`` loads in the same process."""

from __future__ import annotations

import os

import mlflow
import torch
from mlflow import MlflowClient

from jobs.training.tracking import log_and_register_model, registered_name
from ltchm.codec import load_model
from ltchm.codec.checkpoint import save_checkpoint
from ltchm.codec.identity import identity_of
from ltchm.config import load_config
from ltchm.zoo import get_model


def _register(tmp_path, uri: str, seed: int) -> str:
    cfg = load_config(overrides={"model.N": 16, "model.context": "checkerboard"})
    torch.manual_seed(seed)
    ckpt = tmp_path / f"model{seed}.pt"
    model = get_model("ltchm", N=16, context="checkerboard")
    weights_hash = save_checkpoint(model, ckpt, lmbda=512)
    client = MlflowClient(uri)
    exp = client.create_experiment(f"e{seed}")
    run_id = client.create_run(exp).info.run_id
    name, version = log_and_register_model(uri, run_id, ckpt, cfg, weights_hash)
    assert name == registered_name(cfg) == "ltchm-lambda512" and version == "1"
    return weights_hash


def test_registering_restores_the_tracking_uri(tmp_path, monkeypatch) -> None:
    """The demo and notebooks train, then load by URI, in one process (a CI failure)."""
    user_store = f"sqlite:///{tmp_path / 'user.db'}"
    other_store = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user_store)
    user_hash = _register(tmp_path, user_store, seed=1)
    other_hash = _register(tmp_path, other_store, seed=2)
    assert user_hash != other_hash

    assert os.environ["MLFLOW_TRACKING_URI"] == user_store
    assert mlflow.get_tracking_uri() == user_store
    model = load_model("models:/ltchm-lambda512@candidate")
    assert identity_of(model).weights_hash == user_hash


def test_registered_pyfunc_codes_images(tmp_path, ucm_dir, monkeypatch) -> None:
    """``mlflow.pyfunc.load_model`` of a registered version reports real coded sizes."""
    import pandas as pd

    from ltchm.codec import ImageCodec
    from ltchm.imageio import list_images, read_image

    store = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    _register(tmp_path, store, seed=3)
    pyfunc = mlflow.pyfunc.load_model("models:/ltchm-lambda512@candidate")
    images = [str(p) for p in list_images(ucm_dir)[:2]]
    rows = pyfunc.predict(pd.DataFrame({"path": images}))
    assert pyfunc.predict(images) == rows  # a plain list of paths works too
    codec = ImageCodec(load_model("models:/ltchm-lambda512@candidate"))
    for row, path in zip(rows, images, strict=True):
        x = read_image(path)
        assert row["path"] == path and row["bytes"] == len(codec.encode(x))
        assert row["bpp"] == 8 * row["bytes"] / (x.shape[-1] * x.shape[-2])
