"""The training/evaluation data of the training benchmarks, built through ``ltchm preprocess``.

From the development data (``../shared/data/dev``): the 21 UC-Merced images, the 4 DOTA
images and the 8-bit RGB(A/NIR) scenes, but not ``rasterio_rgb1..4.tif``, which are crops of
``rasterio_RGB.byte.tif`` (one in train and another in test would leak). Without the dev
data, the public-domain samples in ``samples/`` stand in. The split is the preprocessing
job's own hash split with the settings in ``benchmarks/devshards.yaml``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ltchm.paths import REPO_ROOT, SAMPLES, dev_data

__all__ = ["DATA_CONFIG", "build_shards", "sources"]

DATA_CONFIG = Path(__file__).resolve().with_name("devshards.yaml")
SCENES_8BIT = (
    "rasterio_RGB.byte.tif",
    "opengeos_naip_m_4709963_se_14_1_20100629.tif",
    "riotiler_pix4d_alpha_nodata.tif",
    "riocogeo_image_geos.tif",
)


def sources() -> dict[str, list[Path]]:
    """The images, by source folder name (the name the shards' ids carry)."""
    dev = dev_data()
    if dev is None:
        return {
            "ucm": sorted((SAMPLES / "ucm").glob("*.tif")),
            "scenes": [p for p in sorted((SAMPLES / "scenes").glob("*.tif")) if "16" not in p.name],
        }
    return {
        "ucm": sorted((dev / "ucm").glob("*.tif")),
        "dota": sorted((dev / "dota").glob("*.png")),
        "scenes": [dev / "scenes" / name for name in SCENES_8BIT],
    }


def build_shards(out: Path, raw: Path | None = None, config: Path = DATA_CONFIG) -> Path:
    """Copy the images into folders and run ``ltchm preprocess`` on them; ``out`` is reused
    when it holds a finished job (its manifest). Returns ``out``."""
    if (out / "manifest.json").is_file():
        return out
    raw = raw or out.with_name(out.name + "-raw")
    folders = []
    for name, files in sources().items():
        folder = raw / name
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            # copies, not links: the job refuses links that leave the folder
            if not (folder / f.name).exists():
                shutil.copyfile(f, folder / f.name)
        folders.append(str(folder))
    cmd = [sys.executable, "-m", "ltchm", "preprocess", *folders, "--out", str(out)]
    cmd += ["--config", str(config)]
    subprocess.run(cmd, check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    return out
