"""Archives in the users' layouts, built at test time from the development images."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.sample_archives import make_dota_part, make_gaofen_folder, make_ucmerced_zip


@pytest.fixture(scope="session")
def dev(dev_dir: Path) -> Path:
    return dev_dir


@pytest.fixture(scope="session")
def archives(dev: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("archives")
    dota = sorted((dev / "dota").glob("*.png"))
    return {
        "dota_zip": make_dota_part(dota[:2], root / "part1.zip", "part1"),
        "dota_tar": make_dota_part(dota[2:], root / "part2.tar", version="2.0"),
        "dota_tgz": make_dota_part(dota[:1], root / "part3.tar.gz", "part3"),
        "ucm_zip": make_ucmerced_zip(
            sorted((dev / "ucm").glob("*.tif"))[:6], root / "UCMerced_LandUse.zip"
        ),
        "gaofen": make_gaofen_folder(
            [
                dev / "scenes" / "riocolor_rgb16.tif",
                dev / "scenes" / "opengeos_naip_m_4709963_se_14_1_20100629.tif",
            ],
            root / "gaofen",
        ),
    }
