"""Model identity: what a compressed file records so that only the right model decodes it."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ltchm.config import ModelConfig, config_hash

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ModelIdentity", "identity_of", "model_config_of", "weights_hash"]


def model_config_of(model: nn.Module) -> ModelConfig:
    """The registry config a model was built from (``ltchm.zoo`` records it)."""
    cfg = getattr(model, "model_config", None)
    if not isinstance(cfg, ModelConfig):
        raise ValueError(
            f"{type(model).__name__} carries no registry config; build it with ltchm.zoo or "
            "load it with ltchm.codec.load_model"
        )
    return cfg


def weights_hash(model: nn.Module) -> str:
    """sha256 over every tensor of the state dict, coding tables included."""
    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class ModelIdentity:
    """Registry name, rate point and hashes of a model's configuration and weights."""

    name: str
    lmbda: float
    config_hash: str  # hex, 16 digits are stored
    weights_hash: str

    def short(self) -> str:
        lm = "?" if math.isnan(self.lmbda) else f"{self.lmbda:g}"
        cfg, w = self.config_hash[:8], self.weights_hash[:8]
        return f"{self.name} (lambda={lm}, config {cfg}, weights {w})"

    def matches(self, other: ModelIdentity) -> bool:
        return (
            self.name == other.name
            and self.config_hash[:16] == other.config_hash[:16]
            and self.weights_hash[:16] == other.weights_hash[:16]
        )


def identity_of(model: nn.Module) -> ModelIdentity:
    cfg = model_config_of(model)
    lmbda = getattr(model, "lmbda", None)
    return ModelIdentity(
        name=cfg.name,
        lmbda=float("nan") if lmbda is None else float(lmbda),
        config_hash=config_hash(cfg),
        weights_hash=weights_hash(model),
    )
