"""Small archives in the layouts users download, built from a folder of real images.

The test suite and ``benchmarks/preprocess.py`` need DOTA parts (zip and tar),
``UCMerced_LandUse.zip`` and Gaofen scene folders, but the real downloads are tens of GB;
these builders lay the development images (``ltchm.paths.dev_data()``) out the same way.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["make_dota_part", "make_gaofen_folder", "make_ucmerced_zip"]


def make_dota_part(
    images: Iterable[Path],
    dest: Path,
    part: str = "part1",
    *,
    version: str = "1.0",
    labels: bool = True,
    rename: dict[str, str] | None = None,
) -> Path:
    """A DOTA image part: ``dest`` ending in .zip or .tar (optionally .tar.gz).

    Layouts: v1.0 ``part1/images/P0001.png`` (+ ``part1/labelTxt/P0001.txt``); v1.5 and v2.0
    ``images/P0001.png`` (+ ``labelTxt-v1.5/`` or ``labelTxt-v2.0/``). ``rename`` maps a
    source stem to the stem stored (to make more distinct images from few files).
    """
    rename = rename or {}
    if version == "1.0":
        prefix, label_dir = f"{part}/images", f"{part}/labelTxt"
    else:
        prefix, label_dir = "images", f"labelTxt-v{version}"
    entries: list[tuple[str, Path | bytes]] = []
    for path in sorted(Path(p) for p in images):
        stem = rename.get(path.stem, path.stem)
        entries.append((f"{prefix}/{stem}{path.suffix}", path))
        if labels:
            entries.append((f"{label_dir}/{stem}.txt", b"imagesource:GoogleEarth\ngsd:null\n"))
    _write(dest, entries)
    return dest


def make_ucmerced_zip(images: Iterable[Path], dest: Path) -> Path:
    """``UCMerced_LandUse.zip`` with ``UCMerced_LandUse/Images/<class>/<class>NN.tif``."""
    entries: list[tuple[str, Path | bytes]] = []
    for path in sorted(Path(p) for p in images):
        label = path.stem.rstrip("0123456789")
        entries.append((f"UCMerced_LandUse/Images/{label}/{path.name}", path))
    _write(dest, entries)
    return dest


def make_gaofen_folder(scenes: Iterable[Path], dest: Path) -> Path:
    """A folder of GeoTIFF scenes (copied), as a Gaofen delivery unpacked per scene."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in scenes:
        shutil.copyfile(path, dest / Path(path).name)
    return dest


def _write(dest: Path, entries: list[tuple[str, Path | bytes]]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    name = dest.name.lower()
    if name.endswith(".zip"):
        # DOTA and UC-Merced ship deflated zips; PNGs barely shrink, TIFFs do.
        with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for arcname, src in entries:
                if isinstance(src, bytes):
                    zf.writestr(arcname, src)
                else:
                    zf.write(src, arcname)
        return
    gzip = name.endswith((".tar.gz", ".tgz"))
    with tarfile.open(dest, "w:gz") if gzip else tarfile.open(dest, "w") as tf:
        for arcname, src in entries:
            if isinstance(src, bytes):
                info = tarfile.TarInfo(arcname)
                info.size = len(src)
                tf.addfile(info, io.BytesIO(src))
            else:
                tf.add(src, arcname)
