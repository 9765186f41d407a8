"""Resuming a batch: one record per finished scene, and what a record must match.

A scene is skipped on a rerun when its source checksum, the model and the coding settings
(:func:`fingerprint`) match its record and its output file is intact. Records live in
``<out>/.compress_scenes/records/``, one small JSON file each, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from ltchm.atomic import atomic_write_text
from ltchm.config import ScenesConfig
from pipeline.scenes.inputs import Scene

__all__ = ["STATE_DIR", "clear_temps", "fingerprint", "load_record", "write_record"]

STATE_DIR = ".compress_scenes"
_TEMP = re.compile(r"^\..+\.ltcs\.[^.]+\.ltcs$")


def fingerprint(cfg: ScenesConfig, weights_hash: str) -> str:
    """What a finished file depends on besides its source: model and coding settings."""
    keys = ("tile_size", "overlap", "blend_width", "bit_mapping", "band_groups", "max_error",
            "psnr_floor", "target_psnr", "target_bpp")  # fmt: skip
    data = {k: getattr(cfg, k) for k in keys} | {"weights": weights_hash, "format": 1}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def record_path(out_dir: Path, scene: Scene) -> Path:
    digest = hashlib.sha256(scene.key.encode()).hexdigest()[:24]
    return out_dir / STATE_DIR / "records" / f"{digest}.json"


def load_record(out_dir: Path, scene: Scene, fp: str) -> dict[str, Any] | None:
    """The scene's record if it was written under the same fingerprint, else None."""
    try:
        record = json.loads(record_path(out_dir, scene).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if record.get("fingerprint") != fp or record.get("scene") != scene.key:
        return None
    return dict(record)


def write_record(out_dir: Path, scene: Scene, fp: str, row: dict[str, Any]) -> None:
    """Record a finished scene (its report row and the checksums a rerun compares)."""
    record = {
        "scene": scene.key,
        "fingerprint": fp,
        "source_sha256": row["source_sha256"],
        "output_sha256": row["output_sha256"],
        "row": row,
    }
    atomic_write_text(record_path(out_dir, scene), json.dumps(record, indent=1))


def clear_temps(out_dir: Path) -> None:
    """Remove the temporary files of killed runs (never complete, never renamed)."""
    for dirpath, _, files in os.walk(out_dir):
        for f in files:
            if _TEMP.match(f) or f.endswith(".stage.tif"):
                Path(dirpath, f).unlink(missing_ok=True)
