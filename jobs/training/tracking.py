"""MLflow for training: the store, runs (a parent per sweep, a child per lambda), metrics,
and the model registry.

Registry layout: **one registered model per rate point**, ``{registered_model}-lambda{L}``
(e.g. ``ltchm-lambda512``), its versions being successive trainings of that rate point. A
rate point is what users pick (``models:/ltchm-lambda512@champion``), aliases belong to a
registered model, and promoting a better lambda=512 model must not touch the other five; one
model with versions tagged by lambda would need per-lambda alias names instead. New versions
get the alias ``candidate``; ``ltchm promote NAME VERSION`` moves ``champion``.

A version's artifacts hold the codec checkpoint (``model/checkpoint/model.pt``: tensors and
primitives, read with ``torch.load(weights_only=True)``) and an MLflow pyfunc defined by
code (``pyfunc_model.py``, "models from code"), so neither ``ltchm.codec.load_model`` nor
``mlflow.pyfunc.load_model`` unpickles anything.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ltchm.config import Config, dump_config
from ltchm.tracking import TrackingError, using_tracking_uri

__all__ = [
    "MetricLogger",
    "flatten",
    "log_and_register_model",
    "promote",
    "registered_name",
]

CANDIDATE, CHAMPION = "candidate", "champion"
PYFUNC = Path(__file__).with_name("pyfunc_model.py")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"train.lr": "0.0001", ...}`` for MLflow params."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
    return out


def registered_name(cfg: Config) -> str:
    return f"{cfg.tracking.registered_model}-lambda{cfg.loss.lmbda:g}"


FLUSH_SECONDS = 30.0


class MetricLogger:
    """Batched metric logging to one run (rank 0 of a training job)."""

    def __init__(self, uri: str, run_id: str) -> None:
        from mlflow import MlflowClient

        self.client, self.run_id = MlflowClient(uri), run_id
        self._pending: list[Any] = []
        self._flushed = time.monotonic()

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        for k, v in metrics.items():
            if v is not None and math.isfinite(float(v)):
                self._pending.append(Metric(k, float(v), ts, step))
        # in batches, but at least every FLUSH_SECONDS: the MLflow UI shows a live run
        if len(self._pending) >= 200 or time.monotonic() - self._flushed > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._flushed = time.monotonic()
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self.client.log_batch(self.run_id, metrics=batch)


def log_and_register_model(
    uri: str,
    run_id: str,
    checkpoint: Path,
    cfg: Config,
    weights_hash: str,
) -> tuple[str, str]:
    """Log ``checkpoint`` as the run's model, register a version, alias it ``candidate``.

    Returns (registered model name, version).
    """
    import mlflow
    from mlflow import MlflowClient

    name = registered_name(cfg)
    client = MlflowClient(uri)
    with using_tracking_uri(uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC),
            artifacts={"checkpoint": str(checkpoint)},
            pip_requirements=[],
            metadata={"ltchm": {"lmbda": cfg.loss.lmbda, "weights_hash": weights_hash}},
        )
        version = mlflow.register_model(info.model_uri, name, await_registration_for=60)
    tags = {
        "lmbda": f"{cfg.loss.lmbda:g}",
        "N": str(cfg.model.N),
        "context": cfg.model.context,
        "mixture": cfg.model.mixture,
        "weights_hash": weights_hash,
        "run_id": run_id,
        "config": json.dumps(dump_config(cfg)["model"]),
    }
    for k, v in tags.items():
        client.set_model_version_tag(name, version.version, k, v)
    client.set_registered_model_alias(name, CANDIDATE, version.version)
    return name, str(version.version)


def promote(uri: str, name: str, version: str) -> str | None:
    """Point ``champion`` at ``version``; return the version it pointed at before."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(uri)
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise TrackingError(f"no version {version} of registered model {name!r}: {exc}") from None
    try:
        previous = client.get_model_version_by_alias(name, CHAMPION).version
    except MlflowException:
        previous = None
    client.set_registered_model_alias(name, CHAMPION, version)
    return previous
