"""The image codec: checkpoints, model specs, the ``.ltc`` container and ``ImageCodec``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ltchm.codec.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from ltchm.codec.container import ContainerError, bits_per_pixel
    from ltchm.codec.identity import ModelIdentity, identity_of, weights_hash
    from ltchm.codec.image import ImageCodec, ModelMismatchError
    from ltchm.codec.spec import load_model

__all__ = [
    "CheckpointError",
    "ContainerError",
    "ImageCodec",
    "ModelIdentity",
    "ModelMismatchError",
    "bits_per_pixel",
    "identity_of",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "weights_hash",
]

# Loaded on first use (PEP 562): importing a light submodule (the CLI's parsers, the
# container format) must not load torch, so that every command's --help is instant.
_HOME = {
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ContainerError": "container",
    "ModelIdentity": "identity",
    "identity_of": "identity",
    "weights_hash": "identity",
    "ImageCodec": "image",
    "ModelMismatchError": "image",
    "bits_per_pixel": "container",
    "load_model": "spec",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"ltchm.codec.{_HOME[name]}"), name)
    raise AttributeError(f"module 'ltchm.codec' has no attribute {name!r}")
