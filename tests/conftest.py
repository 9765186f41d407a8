"""Shared fixtures: the real development images, and the allocator tuning the CLI applies."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from devdata import make_dev_standins
from processes import ray_nodes

from jobs.ray_cluster import init_ray
from ltchm.codec import save_checkpoint
from ltchm.imageio import list_images, read_image
from ltchm.paths import dev_data
from ltchm.quickfit import quick_fit
from ltchm.runtime import tune_allocator
from ltchm.zoo import get_model

warnings.filterwarnings("ignore", category=FutureWarning)
tune_allocator()
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def dev_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``../shared/data/dev``, or stand-ins of it generated from the embedded samples where
    only the repository exists (``tests/devdata.py``): every test runs either way."""
    return dev_data() or make_dev_standins(tmp_path_factory.mktemp("dev"))


@pytest.fixture(scope="session")
def ucm_dir(dev_dir: Path) -> Path:
    return dev_dir / "ucm"


@pytest.fixture(scope="session")
def scenes_dir(dev_dir: Path) -> Path:
    """The georeferenced dev scenes (or their generated stand-ins)."""
    return dev_dir / "scenes"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A real local Ray (2 CPUs) for in-process job runs; the jobs reuse it."""
    import ray

    if ray.is_initialized():  # left by another test module: use it, leave it
        yield
        return
    init_ray("local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A one-node Ray cluster (2 CPUs) started with ``ray start --head``, for ``ray job
    submit``: (dashboard URL, environment)."""
    with ray_nodes(tmp_path, cpus=[2]) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def dev_images(ucm_dir: Path) -> list[torch.Tensor]:
    return [read_image(p) for p in list_images(ucm_dir)]


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory, dev_images) -> dict[str, Path]:
    """A small LTCHM (N=32) trained on the dev images, in both context modes.

    Autoregressive: 100 steps from scratch; checkerboard: 50 more from those weights.
    """
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    ar = get_model("ltchm", N=32, context="autoregressive")
    quick_fit(ar, dev_images, steps=100, lmbda=512, patch=64, batch=4, lr=1e-3)
    save_checkpoint(ar, root / "ar.pt", lmbda=512)
    cb = get_model("ltchm", N=32, context="checkerboard")
    state = {k: v for k, v in ar.state_dict().items() if not k.endswith(".mask")}
    cb.load_state_dict(state, strict=False)
    quick_fit(cb, dev_images, steps=50, lmbda=512, patch=64, batch=4, lr=5e-4, seed=1)
    save_checkpoint(cb, root / "cb.pt", lmbda=512)
    return {"autoregressive": root / "ar.pt", "checkerboard": root / "cb.pt"}
