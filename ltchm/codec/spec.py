"""Resolving a model SPEC: a registry name (+ config), a checkpoint path, or an MLflow URI."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ltchm.codec.checkpoint import load_checkpoint, prepare_for_coding
from ltchm.codec.identity import ModelIdentity
from ltchm.codec.pretrained import PREFIX, pretrained_path
from ltchm.config import ModelConfig, load_config
from ltchm.models import CodingModel

__all__ = ["load_model", "load_recorded_model", "recorded_spec", "spec_source"]

INIT_SEED = 0  # registry models built from a config get reproducible initial weights


def load_model(
    spec: str,
    config: str | Path | None = None,
    device: str | torch.device = "cpu",
    tracking_uri: str | None = None,
) -> CodingModel:
    """A model ready to code.

    Args:
        spec: ``models:/name@alias`` / ``models:/name/version`` / ``runs:/...`` (MLflow),
            ``pretrained:<set>/<λ>`` (``samples/models``), a checkpoint file, or a registry
            name (see ``ltchm list-models``) whose config comes from ``config`` (untrained,
            reproducibly initialised weights).
        config: a config file for a registry name (its ``model`` and ``loss.lmbda``).
        tracking_uri: the MLflow store of ``models:/`` specs (default: see
            :func:`ltchm.tracking.resolve_tracking_uri`).
    """
    from ltchm.zoo import list_models, model_from_config

    if spec.startswith(("models:/", "runs:/", "mlflow-artifacts:/")):
        from ltchm.tracking import download_checkpoint

        return load_checkpoint(download_checkpoint(spec, tracking_uri), map_location=device)
    if spec.startswith(PREFIX):
        return load_checkpoint(pretrained_path(spec), map_location=device)
    path = Path(spec)
    if path.is_file():
        if config is not None:
            raise ValueError("--config applies to registry names; a checkpoint carries its own")
        return load_checkpoint(path, map_location=device)
    if spec in list_models():
        cfg = load_config(config) if config is not None else None
        model_cfg = (cfg.model if cfg else ModelConfig()).model_copy(update={"name": spec})
        warnings.warn(
            f"{spec!r} from the registry has untrained weights (seed {INIT_SEED}); pass a "
            "checkpoint or an MLflow model URI for a trained one",
            stacklevel=2,
        )
        with torch.random.fork_rng():
            torch.manual_seed(INIT_SEED)
            model: CodingModel = model_from_config(model_cfg)
        model.lmbda = cfg.loss.lmbda if cfg else None
        return prepare_for_coding(model.to(device))
    raise ValueError(
        f"model spec {spec!r} is neither a checkpoint file, an MLflow URI (models:/..., "
        f"runs:/...), a pretrained set (pretrained:<set>/<λ>) nor a registered model "
        f"({', '.join(list_models())})"
    )


def spec_source(spec: str, tracking_uri: str | None = None) -> str:
    """Where a model SPEC's weights come from, stably, for a compressed file to record:
    ``models:/name@alias`` as ``models:/name/<version>`` (an alias moves, a version does
    not) with its store, a checkpoint as its absolute path, a pretrained set as named, a
    registry name as untrained."""
    if spec.startswith("models:/"):
        from ltchm.tracking import resolve_tracking_uri

        uri = resolve_tracking_uri(tracking_uri)
        name, _, alias = spec[len("models:/") :].partition("@")
        if alias:
            from mlflow import MlflowClient

            try:
                version = MlflowClient(uri).get_model_version_by_alias(name, alias).version
            except Exception:  # recorded as given: the load itself reports a bad alias
                return f"{spec} ({uri})"
            return f"models:/{name}/{version} ({uri}; alias {alias} when encoded)"
        return f"{spec} ({uri})"
    if spec.startswith(("runs:/", "mlflow-artifacts:/", PREFIX)):
        return spec
    path = Path(spec)
    if path.is_file():
        return str(path.resolve())
    return f"{spec} (registry, untrained)"


def recorded_spec(source: str | None) -> tuple[str, str | None] | None:
    """(spec, tracking URI) of a source recorded by :func:`spec_source` that can be loaded
    again (a registered version with its store, a pretrained set, a checkpoint still at its
    path), else ``None``."""
    if not source:
        return None
    spec, _, rest = source.partition(" (")
    if spec.startswith("models:/"):
        store = rest.split(";")[0].rstrip(")") or None
        return spec, store
    if spec.startswith(("runs:/", PREFIX)) or Path(spec).is_file():
        return spec, None
    return None


def load_recorded_model(
    identity: ModelIdentity,
    source: str | None,
    device: str | torch.device = "cpu",
    tracking_uri: str | None = None,
) -> CodingModel:
    """The model a compressed file names: the local store's copy (by weights hash), else
    the source it records; ``LookupError`` (one line, with what to do) when neither
    loads. ``tracking_uri`` overrides the store the file recorded."""
    from ltchm.codec.store import find_model, store_dir

    model = find_model(identity)
    if model is not None:
        return prepare_for_coding(model.to(device))
    recorded = recorded_spec(source)
    why = f"; it records its source as {source!r}, which cannot be loaded here" if source else ""
    if recorded is not None:
        spec, store = recorded
        try:
            return load_model(spec, None, device, tracking_uri or store)
        except Exception as exc:  # noqa: BLE001: said below, with what to do
            why = f"; its source {source} did not load ({exc})"
    raise LookupError(
        f"encoded with {identity.short()}, which is not in the local model store "
        f"({store_dir()}){why}; pass --model"
    )
