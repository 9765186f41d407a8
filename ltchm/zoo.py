"""The one model registry: ``get_model(name, **cfg)`` and ``list_models()``.

LTCHM and its Table 4 ablations share one implementation; TCM (Liu et al. 2023, the paper's
strongest comparison) and CompressAI's Cheng2020 models are the learned baselines beside them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ltchm.config import ModelConfig

if TYPE_CHECKING:
    from torch import nn

    from ltchm.models import CodingModel

__all__ = ["describe", "get_model", "list_models", "model_from_config", "recorded_model_config"]


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., nn.Module]
    description: str
    # "ltchm": an LTCHM variant, its keys those of LTCHM's constructor; any other family takes
    # the keys of its build function
    family: str = "ltchm"


# The registry names its models without importing them (torch, CompressAI): listing them and
# every command's --help stay instant; a model's code loads when one is built.
def _ltchm(dam: bool = True, hpham: bool = True, gca: bool = True) -> Callable[..., nn.Module]:
    def build(**cfg: Any) -> nn.Module:
        from ltchm.models.ltchm import LTCHM, Variant

        return LTCHM(variant=Variant(dam=dam, hpham=hpham, gca=gca), **cfg)

    return build


def _compressai(cls_name: str) -> Callable[..., nn.Module]:
    def build(N: int = 192) -> nn.Module:
        from compressai import models

        model: nn.Module = getattr(models, cls_name)(N=N)
        return model

    return build


def _fdegcnet(N: int = 128, context: str = "autoregressive") -> nn.Module:
    from ltchm.models.fdegcnet import FDEGCNet

    return FDEGCNet(N=N, context=context)  # type: ignore[arg-type]  # checked by the model


def _tcm(N: int = 128) -> nn.Module:
    from ltchm.models.tcm import TCM

    return TCM(N=N)


_REGISTRY: dict[str, _Entry] = {
    "ltchm": _Entry(_ltchm(), "LTCHM: DAM + HPHAM with GCA (Table 4: baseline+DAM+HPHAM w/ GCA)"),
    "ltchm-baseline": _Entry(
        _ltchm(dam=False, hpham=False, gca=False), "Cheng2020-style, no attention"
    ),
    "ltchm-dam": _Entry(_ltchm(dam=True, hpham=False, gca=False), "baseline + DAM"),
    "ltchm-hpham": _Entry(_ltchm(dam=False, hpham=True, gca=True), "baseline + HPHAM (w/ GCA)"),
    "ltchm-hpham-nogca": _Entry(
        _ltchm(dam=False, hpham=True, gca=False), "baseline + HPHAM (w/o GCA)"
    ),
    "fdegcnet": _Entry(
        _fdegcnet, "FDEGCNet (Fang et al. 2025): ODAM, HEAM, MCAM; Laplace mixture", "fdegcnet"
    ),
    "tcm": _Entry(
        _tcm,
        "TCM: Transformer-CNN mixture blocks, channel-wise entropy model with SWAtten "
        "(Liu et al., CVPR 2023; N = 64, 96, 128)",
        "tcm",
    ),
    "cheng2020-attn": _Entry(
        _compressai("Cheng2020Attention"), "CompressAI Cheng2020 (attention)", "compressai"
    ),
    "cheng2020-anchor": _Entry(
        _compressai("Cheng2020Anchor"), "CompressAI Cheng2020 (anchor)", "compressai"
    ),
}


def list_models() -> list[str]:
    """Registered model names."""
    return list(_REGISTRY)


def describe(name: str) -> str:
    return _entry(name).description


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(_REGISTRY)}") from None


def accepted_keys(name: str) -> list[str]:
    """The configuration keys model ``name`` takes."""
    entry = _entry(name)
    if entry.family == "ltchm":
        from ltchm.models.ltchm import LTCHM

        return [p for p in inspect.signature(LTCHM).parameters if p != "variant"]
    return list(inspect.signature(entry.build).parameters)


def get_model(name: str, **cfg: Any) -> CodingModel:
    """Build registered model ``name`` with configuration ``cfg`` (e.g. ``N=192``)."""
    entry = _entry(name)
    allowed = accepted_keys(name)
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise TypeError(
            f"model {name!r} does not take {', '.join(unknown)}; it takes: {', '.join(allowed)}"
        )
    model: CodingModel = entry.build(**cfg)
    # what the codec records as the model's identity and checkpoints rebuild it from
    model.model_config = ModelConfig(name=name, **cfg)
    return model


def model_from_config(cfg: ModelConfig) -> CodingModel:
    """Build the model a :class:`~ltchm.config.ModelConfig` describes.

    Keys the model does not take are dropped only when they hold their default value, so a
    config that sets e.g. ``mixture: laplace`` for a Cheng2020 baseline is an error.
    """
    allowed = set(accepted_keys(cfg.name))
    defaults = ModelConfig().model_dump()
    kwargs = {}
    for key, value in cfg.model_dump(exclude={"name"}).items():
        if key in allowed:
            kwargs[key] = value
        elif value != defaults[key]:
            raise TypeError(f"model {cfg.name!r} does not take model.{key} (set to {value!r})")
    return get_model(cfg.name, **kwargs)


def recorded_model_config(section: Mapping[str, Any]) -> ModelConfig:
    """The :class:`ModelConfig` a recorded model section (a checkpoint's) stands for.

    A key the section lacks but its model takes was added after the section was written, so
    it holds the value models had then (``ModelConfig.LEGACY_VALUES``): a checkpoint saved
    before ``dam_layout`` existed is a ``table1`` model, not today's default.
    """
    data = dict(section)
    name = data.get("name", ModelConfig().name)
    if isinstance(name, str) and name in _REGISTRY:
        taken = set(accepted_keys(name))
        for key, legacy in ModelConfig.LEGACY_VALUES.items():
            if key in taken:
                data.setdefault(key, legacy)
    return ModelConfig.model_validate(data)


def main(argv: list[str] | None = None) -> int:
    """``ltchm list-models``"""
    import argparse

    parser = argparse.ArgumentParser(prog="ltchm list-models", description=main.__doc__)
    parser.parse_args(argv)
    width = max(map(len, _REGISTRY))
    for name, entry in _REGISTRY.items():
        print(f"{name:<{width}}  {entry.description}  (keys: {', '.join(accepted_keys(name))})")
    from ltchm.codec.pretrained import pretrained_sets

    sets = pretrained_sets()
    if sets:
        print("\npretrained sets (--model pretrained:<set>/<λ>; see each set's MODEL_CARD.md):")
        for set_name, models in sets.items():
            print(f"  {set_name}: λ = {', '.join(f'{lm:g}' for lm in models)}")
    return 0
