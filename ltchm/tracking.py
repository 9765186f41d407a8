"""The platform's one way to reach MLflow: the store, experiments, and ``models:/`` URIs.

Every command resolves the tracking URI the same way (:func:`resolve_tracking_uri`: the
flag, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns.db`` in the working directory),
so a model ``ltchm train`` registers is found by ``ltchm encode --model models:/...``
without further settings. Training's runs, metrics and registry live in
:mod:`jobs.training.tracking`, evaluation's comparison runs in
:mod:`ltchm.evaluation.tracking`; both build on this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

__all__ = [
    "DEFAULT_TRACKING_URI",
    "TrackingError",
    "check_tracking",
    "download_checkpoint",
    "ensure_experiment",
    "resolve_tracking_uri",
    "tracking_uri_flag",
    "using_tracking_uri",
]

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"


class TrackingError(RuntimeError):
    """The tracking server cannot be used (unreachable, refusing, misconfigured)."""


def resolve_tracking_uri(uri: str | None = None, base: Path | None = None) -> str:
    """The tracking URI to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite file in
    the working directory; relative SQLite or file stores made absolute (Ray workers run
    elsewhere)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    base = base or Path.cwd()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///') :]).resolve()}"
    if "://" not in uri:
        return (base / uri).resolve().as_uri()
    return uri


@contextmanager
def _quick_http() -> Iterator[None]:
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_tracking(uri: str) -> None:
    """Fail fast, before any work, when the tracking store cannot be used."""
    from mlflow import MlflowClient

    try:
        with _quick_http():
            MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # connection refused, DNS, auth, schema: all are fatal here
        raise TrackingError(f"cannot use the MLflow tracking store {uri}: {exc}") from None


def ensure_experiment(uri: str, name: str, artifact_location: str | None = None) -> str:
    """The experiment's id, created if new; in a SQLite store with an absolute artifact root
    beside the database (MLflow's default, ``./mlruns``, is relative to whichever process
    creates the experiment)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    if artifact_location is None and uri.startswith("sqlite:"):
        db = Path(uri[len("sqlite:///") :])
        artifact_location = (db.parent / "mlartifacts").resolve().as_uri()
    return str(client.create_experiment(name, artifact_location=artifact_location))


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (``log_model``, ``register_model``, artifact downloads) at
    ``uri`` for a block.

    ``mlflow.set_tracking_uri`` is process-wide and also rewrites ``$MLFLOW_TRACKING_URI``;
    left set, every later ``models:/`` load in the same process (a demo, a notebook, the
    test suite) would resolve against this store instead of the one the user names. MLflow's
    own ``_use_tracking_uri`` unsets the variable on exit, so we restore both ourselves.
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils

    previous, env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(cast(Any, previous))  # None restores MLflow's default
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


@contextmanager
def tracking_uri_flag(uri: str | None) -> Iterator[None]:
    """A command's ``--tracking-uri`` for the duration of the command (and the processes it
    starts, Ray's workers included): ``$MLFLOW_TRACKING_URI`` set, then restored."""
    if uri is None:
        yield
        return
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = resolve_tracking_uri(uri)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def download_checkpoint(model_uri: str, tracking_uri: str | None = None) -> Path:
    """The codec checkpoint of an MLflow model (``models:/name@alias``, ``runs:/...``),
    downloaded from the store :func:`resolve_tracking_uri` names.

    Raises:
        LookupError: no store there (reading never creates one), or no such model, version
            or alias in it; the message names the store.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise LookupError(
            f"{model_uri}: there is no MLflow store at {uri[len('sqlite:///') :]}; name the "
            "one 'ltchm train' registered into with --tracking-uri (or $MLFLOW_TRACKING_URI)"
        )
    try:
        with using_tracking_uri(uri):
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    except MlflowException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LookupError(f"{model_uri}: {first} (MLflow store {uri})") from None
    if local.is_file():
        return local
    candidates = sorted(local.rglob("*.pt"))
    if not candidates:
        raise FileNotFoundError(f"{model_uri}: no checkpoint (*.pt) among the model's artifacts")
    return candidates[0]
