"""The learned codec in the evaluation: an adapter from ``ltchm.codec.ImageCodec`` to
:class:`ltchm.evaluation.codecs.Codec`.

One :class:`LearnedCodec` is one rate-distortion curve: each of its settings is a model (one
lambda), given as a spec that ``ltchm.codec.load_model`` understands (a registry name with a
config file, a checkpoint path, or ``models:/name@alias``). Models are loaded on first use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from ltchm.evaluation.codecs import CodecError, Setting
from ltchm.evaluation.metrics import to_tensor
from ltchm.imageio import Image8, to_uint8

__all__ = ["LearnedCodec", "ModelSpec", "parse_model_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """One ``--models`` entry: ``[CURVE=]SPEC[,config=FILE]``."""

    spec: str
    curve: str = "ltchm"
    config: str | None = None

    @property
    def key(self) -> str:
        """The model's setting on its curve: a registry name with two configs is two models."""
        return self.spec if self.config is None else f"{self.spec},config={self.config}"


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def parse_model_spec(text: str) -> ModelSpec:
    """``ltchm-mse=runs/l512/ckpt.pt`` or ``ltchm,config=configs/lambda_512.yaml`` or
    ``tcm=models:/tcm-lambda512@champion``: an optional LABEL= (the curve), the source (a
    checkpoint, an MLflow model URI, a pretrained set or a registry name), an optional config.

    Raises:
        ValueError: one line naming the entry, for an empty label or source or a label of
        other characters than letters, digits, ``.``, ``_``, ``+`` and ``-``.
    """
    curve = "ltchm"
    head, _, rest = text.partition(",config=")
    # "models:/..." and paths never contain "=" before their first "/" or ":", labels do not.
    name, eq, spec = head.partition("=")
    if eq and "/" not in name and ":" not in name:
        if not name:
            raise ValueError(f"--models entry {text!r}: no label before '='; write LABEL=SOURCE")
        if not _LABEL.fullmatch(name):
            raise ValueError(
                f"--models entry {text!r}: label {name!r} may hold only letters, digits, "
                "'.', '_', '+' and '-'"
            )
        curve = name
        if not spec:
            raise ValueError(
                f"--models entry {text!r}: no source after '{name}='; write LABEL=SOURCE (a "
                "checkpoint, models:/name@alias, pretrained:<set>/<λ> or a registry name)"
            )
    else:
        spec = head
    if not spec:
        raise ValueError(f"--models entry {text!r}: empty model spec")
    if not rest and text.endswith(",config="):
        raise ValueError(f"--models entry {text!r}: no file after ',config='")
    return ModelSpec(spec=spec, curve=curve, config=rest or None)


@dataclass
class LearnedCodec:
    """A curve of learned models (one per lambda) behind the evaluation's codec interface."""

    name: str
    specs: Sequence[ModelSpec]
    device: str = "cpu"
    label: str = ""
    setting_name: ClassVar[str] = "model"
    # The models use every core (or the accelerator) already; images run one after another.
    parallel: ClassVar[bool] = False
    _codecs: dict[Setting, Any] = field(default_factory=dict, repr=False)
    _models: dict[Setting, nn.Module] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.label = self.label or f"{self.name} (learned)"
        keys = [s.key for s in self.specs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"curve {self.name!r}: a model is listed twice: {keys}")

    def ladder(self) -> list[Setting]:
        # The rate order of models is known only once measured; the report sorts by bpp.
        return [s.key for s in self.specs]

    def check(self) -> None:
        try:
            from ltchm.codec import ImageCodec, load_model  # noqa: F401
        except ImportError as exc:
            raise CodecError(
                f"learned codec {self.name!r}: ltchm.codec is not usable: {exc}"
            ) from None

    def _codec(self, setting: Setting) -> Any:
        if setting not in self._codecs:
            from ltchm.codec import ImageCodec, load_model

            spec = next(s for s in self.specs if s.key == setting)
            model = load_model(spec.spec, spec.config, device=self.device)
            self._models[setting] = model
            self._codecs[setting] = ImageCodec(model, device=self.device)
        return self._codecs[setting]

    def model(self, setting: Setting) -> nn.Module:
        self._codec(setting)
        return self._models[setting]

    def identity(self, setting: Setting) -> dict[str, Any]:
        return dict(self._codec(setting).model_identity())

    def versions(self) -> dict[str, str]:
        return {str(s): str(self.identity(s)) for s in self.ladder()}

    def source_run_id(self, setting: Setting) -> str | None:
        """The MLflow run that trained this model, if its identity names one (for the λ hook)."""
        ident = self.identity(setting)
        return ident.get("mlflow_run_id") or ident.get("run_id")

    def encode(self, img: Image8, setting: Setting) -> bytes:
        data: bytes = self._codec(setting).encode(to_tensor(img).to(self.device))
        return data

    def decode(self, data: bytes, setting: Setting, shape: tuple[int, int]) -> Image8:
        return to_uint8(self._codec(setting).decode(data))
