"""Resume records: what a record must match, and the temporaries of killed runs."""

from __future__ import annotations

from pathlib import Path

from ltchm.config import ScenesConfig
from pipeline.archives import Member
from pipeline.scenes.inputs import Scene
from pipeline.scenes.resume import clear_temps, fingerprint, load_record, write_record


def scene(key: str) -> Scene:
    return Scene(key, Member("/data/" + key, "file", key, key, 10), key + ".ltcs")


def test_a_record_holds_only_under_its_fingerprint(tmp_path: Path) -> None:
    cfg = ScenesConfig()
    fp = fingerprint(cfg, "w1")
    assert fp == fingerprint(ScenesConfig(), "w1")
    assert fp != fingerprint(cfg, "w2")  # other weights
    assert fp != fingerprint(ScenesConfig(tile_size=256), "w1")  # other coding settings
    assert fp == fingerprint(ScenesConfig(workers=3, verify=False), "w1")  # not the file's
    row = {"source_sha256": "s", "output_sha256": "o", "bytes": 5}
    write_record(tmp_path, scene("a.tif"), fp, row)
    record = load_record(tmp_path, scene("a.tif"), fp)
    assert record is not None and record["row"] == row
    assert load_record(tmp_path, scene("a.tif"), fingerprint(cfg, "w2")) is None
    assert load_record(tmp_path, scene("b.tif"), fp) is None
    path = next((tmp_path / ".compress_scenes" / "records").iterdir())
    path.write_text("{ torn")
    assert load_record(tmp_path, scene("a.tif"), fp) is None


def test_temporaries_of_killed_runs_are_cleared(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    keep = [tmp_path / "a.ltcs", tmp_path / "sub" / "b.ltcs", tmp_path / "report.csv"]
    gone = [tmp_path / ".a.ltcs.x1y2.ltcs", tmp_path / "sub" / "c.stage.tif"]
    for p in keep + gone:
        p.write_bytes(b"x")
    clear_temps(tmp_path)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in gone)
