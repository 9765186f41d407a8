"""Deterministic train/val/test assignment by source image.

The split of an image depends only on (seed, dataset, image id): never on which other images
are present, their order, or the machine. Tiles of one image therefore never straddle splits,
a re-run gives the same split, and adding an archive part does not move existing images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["SPLITS", "assign_split", "split_fraction"]

SPLITS = ("train", "val", "test")


def split_fraction(dataset: str, image_id: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by ``(seed, dataset, image_id)``."""
    digest = hashlib.sha256(f"{seed}\0{dataset}\0{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(
    dataset: str, image_id: str, seed: int = 0, ratios: Sequence[float] = (0.8, 0.1, 0.1)
) -> str:
    """``"train"``, ``"val"`` or ``"test"`` with probabilities ``ratios`` (summing to 1).

    With few images the realised proportions scatter around ``ratios`` (each image is an
    independent draw); that is the price of a split that never moves when data is added.
    """
    if len(ratios) != len(SPLITS):
        raise ValueError(f"need {len(SPLITS)} split ratios, got {len(ratios)}")
    u = split_fraction(dataset, image_id, seed)
    edge = 0.0
    for name, ratio in zip(SPLITS, ratios, strict=True):
        edge += ratio
        if u < edge:
            return name
    # Only reachable when the ratios sum to slightly less than 1 in floating point.
    return next(name for name, r in zip(reversed(SPLITS), reversed(ratios), strict=True) if r > 0)
