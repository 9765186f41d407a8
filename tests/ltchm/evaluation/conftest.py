"""Fixtures of the evaluation tests: real dev images and a locally created AlexNet file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image


@pytest.fixture(scope="session")
def alexnet_features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A features-only AlexNet state dict (random init: LPIPS plumbing, not its values)."""
    path = tmp_path_factory.mktemp("lpips") / "alexnet_features.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).features.state_dict(), path)
    return path


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


@pytest.fixture(scope="session")
def ucm_images(ucm_dir: Path) -> dict[str, np.ndarray]:
    """Two UC-Merced images (256x256): one busy, one smooth."""
    return {name: _rgb(ucm_dir / name) for name in ("airplane00.tif", "forest00.tif")}


@pytest.fixture(scope="session")
def dota_crop(dev_dir: Path) -> np.ndarray:
    """An odd-sized 301x287 crop of a DOTA image (of a sample scene without the dev data)."""
    dota = dev_dir / "dota" / "P0706.png"
    src = dota if dota.is_file() else dev_dir / "scenes" / "rasterio_RGB.byte.tif"
    img = _rgb(src)
    H, W = img.shape[:2]
    top, left = (H - 287) // 2, (W - 301) // 2
    return np.ascontiguousarray(img[top : top + 287, left : left + 301])
