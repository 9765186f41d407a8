"""Where the repository, its embedded samples and the development data are."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "SAMPLES", "default_images", "dev_data"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "samples"


def dev_data() -> Path | None:
    """The shared development data (``$LTCHM_DEV_DATA`` or ``../shared/data/dev``), if present."""
    env = os.environ.get("LTCHM_DEV_DATA")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "dev"
    return path if path.is_dir() else None


def default_images() -> Path:
    """UC-Merced images: the development set if present, else the embedded samples."""
    dev = dev_data()
    if dev is not None and (dev / "ucm").is_dir():
        return dev / "ucm"
    return SAMPLES / "ucm"
