"""Named sets of trained models shipped with the repository: ``samples/models/<set>/``.

A set is a folder holding one codec checkpoint per rate point, ``lambda_<λ>.pt``, and a
``MODEL_CARD.md`` (config, training data, steps, measured BD-rates). Any ``--model`` takes
``pretrained:<set>/<λ>``, e.g. ``pretrained:cpu-2h/512``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ltchm.paths import SAMPLES

__all__ = ["PREFIX", "pretrained_dir", "pretrained_path", "pretrained_sets"]

PREFIX = "pretrained:"
_CHECKPOINT = re.compile(r"^lambda_(\d+(?:\.\d+)?)\.pt$")


def pretrained_dir() -> Path:
    return SAMPLES / "models"


def pretrained_sets() -> dict[str, dict[float, Path]]:
    """Set name -> {λ: checkpoint}, for every folder with a model card and checkpoints."""
    sets: dict[str, dict[float, Path]] = {}
    root = pretrained_dir()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        found = {
            float(m[1]): p for p in folder.glob("lambda_*.pt") if (m := _CHECKPOINT.match(p.name))
        }
        if found and (folder / "MODEL_CARD.md").is_file():
            sets[folder.name] = dict(sorted(found.items()))
    return sets


def pretrained_path(spec: str) -> Path:
    """The checkpoint of ``pretrained:<set>/<λ>``; a clear error naming what exists."""
    name = spec.removeprefix(PREFIX)
    sets = pretrained_sets()
    listing = "; ".join(
        f"{s}: {', '.join(f'{lm:g}' for lm in models)}" for s, models in sets.items()
    )
    set_name, _, lmbda = name.partition("/")
    if set_name not in sets:
        raise ValueError(
            f"no pretrained set {set_name!r} (in {pretrained_dir()}: {listing or 'none'})"
        )
    try:
        return sets[set_name][float(lmbda)]
    except (KeyError, ValueError):
        raise ValueError(
            f"{spec!r}: give one of the set's rate points as pretrained:{set_name}/<λ> "
            f"({', '.join(f'{lm:g}' for lm in sets[set_name])})"
        ) from None
