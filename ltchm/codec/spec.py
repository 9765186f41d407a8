"""Resolving a model SPEC: a registry name (+ config), a checkpoint path, or an MLflow URI."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ltchm.codec.checkpoint import load_checkpoint, prepare_for_coding
from ltchm.codec.pretrained import PREFIX, pretrained_path
from ltchm.config import ModelConfig, load_config
from ltchm.models import CodingModel

__all__ = ["load_model"]

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
