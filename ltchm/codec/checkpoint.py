"""Checkpoints that load without unpickling code and code at once.

A checkpoint is a plain dict (format tag, the registry config, lambda, the state dict with
its coding tables, the weights hash, metadata) saved with ``torch.save`` and read with
``torch.load(weights_only=True)``: tensors and primitives only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from ltchm.atomic import atomic_path
from ltchm.codec.identity import model_config_of, weights_hash
from ltchm.config import ModelConfig, dump_config
from ltchm.models import CodingModel

__all__ = ["CheckpointError", "load_checkpoint", "prepare_for_coding", "save_checkpoint"]

FORMAT = "ltchm-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable ltchm checkpoint."""


def prepare_for_coding(model: CodingModel, force: bool = False) -> CodingModel:
    """Build the coding tables if the model lacks them (``update()`` semantics)."""
    ready = getattr(model, "ready", None)
    if (
        force
        or (callable(ready) and not ready())
        or (not callable(ready) and not model.entropy_bottleneck._offset.numel())
    ):
        model.update(force=True)
    return model.eval()


def save_checkpoint(
    model: CodingModel,
    path: str | Path,
    *,
    lmbda: float | None = None,
    metadata: dict[str, Any] | None = None,
    rebuild_tables: bool = True,
    half: bool = False,
) -> str:
    """Write ``model`` atomically, with its coding tables; return its weights hash.

    ``rebuild_tables`` rebuilds the tables from the weights first (after training); pass
    ``False`` to keep the tables a loaded model came with. ``half`` stores the float weights
    in 16 bits (half the file, for distribution): the model's weights are rounded to
    float16 first and its tables built from those, so the file loads as exactly the model
    that was saved (and ``model`` itself is that rounded model afterwards).
    """
    if half:
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                if t.is_floating_point():
                    t.copy_(t.half().float())
        rebuild_tables = True
    prepare_for_coding(model, force=rebuild_tables)
    cfg = model_config_of(model)
    if lmbda is None:
        lmbda = getattr(model, "lmbda", None)
    digest = weights_hash(model)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": dump_config_section(cfg),
        "lmbda": None if lmbda is None else float(lmbda),
        "weights_hash": digest,
        "state_dict": {
            k: v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu()
            for k, v in model.state_dict().items()
        },
        "metadata": metadata or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return digest


def dump_config_section(cfg: ModelConfig) -> dict[str, Any]:
    from ltchm.config import Config

    section: dict[str, Any] = dump_config(Config(model=cfg))["model"]
    return section


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> CodingModel:
    """Load a checkpoint written by :func:`save_checkpoint`, ready to code."""
    from ltchm.zoo import model_from_config, recorded_model_config

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an ltchm checkpoint (expected format {FORMAT!r}); training "
            "checkpoints are consolidated into this format by 'ltchm train'"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} unsupported")
    try:
        cfg = recorded_model_config({**payload["model"], "name": payload["model"]["name"]})
    except (ValidationError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: invalid model config: {exc}") from None
    model: CodingModel = model_from_config(cfg)
    state = payload["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {cfg.name} N={cfg.N}: {exc}") from None
    model.lmbda = payload.get("lmbda")
    model.checkpoint_metadata = payload.get("metadata", {})
    had_tables = any(k.endswith("_quantized_cdf") and v.numel() for k, v in state.items())
    prepare_for_coding(model)
    if (
        had_tables
        and payload.get("weights_hash")
        and weights_hash(model) != payload["weights_hash"]
    ):
        raise CheckpointError(f"{path}: weights hash mismatch: the file is corrupted")
    return model.to(map_location)
