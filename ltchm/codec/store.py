"""A local store of the models files were encoded with, keyed by weights hash, so that
``ltchm decode`` finds the right model without being told."""

from __future__ import annotations

import os
from pathlib import Path

from ltchm.codec.checkpoint import load_checkpoint, save_checkpoint
from ltchm.codec.identity import ModelIdentity, weights_hash
from ltchm.models import CodingModel

__all__ = ["find_model", "store_dir", "store_model"]


def store_dir() -> Path:
    """``$LTCHM_MODEL_STORE`` or ``~/.cache/ltchm/models``."""
    env = os.environ.get("LTCHM_MODEL_STORE")
    return Path(env) if env else Path.home() / ".cache" / "ltchm" / "models"


def store_model(model: CodingModel, digest: str | None = None) -> Path:
    """Keep a copy of ``model`` in the store (once per distinct weights)."""
    digest = digest or weights_hash(model)
    path = store_dir() / f"{digest[:16]}.pt"
    if not path.exists():
        save_checkpoint(model, path, rebuild_tables=False)
    return path


def find_model(identity: ModelIdentity) -> CodingModel | None:
    path = store_dir() / f"{identity.weights_hash[:16]}.pt"
    return load_checkpoint(path) if path.is_file() else None
