"""Shared fixtures: the real development images, and the allocator tuning the CLI applies."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from ltchm.paths import SAMPLES, dev_data
from ltchm.runtime import tune_allocator

warnings.filterwarnings("ignore", category=FutureWarning)
tune_allocator()
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def dev_dir() -> Path:
    """``../shared/data/dev``, or the embedded samples where only the repository exists."""
    return dev_data() or SAMPLES


@pytest.fixture(scope="session")
def ucm_dir(dev_dir: Path) -> Path:
    return dev_dir / "ucm"
