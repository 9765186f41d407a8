"""The batch report: CSV and JSON rows in input order, and the printed summary."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from pipeline.scenes.report import (
    REPORT_FIELDS,
    CompressResult,
    failed_row,
    summary,
    write_report,
)


def test_report_files_and_summary(tmp_path: Path) -> None:
    done = dict.fromkeys(REPORT_FIELDS) | {
        "scene": "a.zip/x.tif", "status": "done", "output": "a.zip/x.ltcs", "bytes": 1234,
        "bpp": 0.5, "psnr_db": [41.2, math.inf, None], "psnr_min_db": 41.2,
    }  # fmt: skip
    skipped = done | {"scene": "b.tif", "status": "skipped"}
    bad = failed_row("c.tif", "RasterioIOError: not a TIFF", seconds=0.12345)
    rows = [done, skipped, bad]
    write_report(tmp_path, rows)

    with open(tmp_path / "report.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["scene"] for r in table] == ["a.zip/x.tif", "b.tif", "c.tif"]
    assert tuple(table[0]) == REPORT_FIELDS and table[0]["psnr_db"] == "41.2;inf;"
    assert table[2]["status"] == "failed" and table[2]["seconds"] == "0.123"
    data = json.loads((tmp_path / "report.json").read_text())  # strict JSON: inf as a string
    assert data[0]["psnr_db"] == [41.2, "inf", None] and data[2]["bytes"] is None

    text = summary(CompressResult(rows, tmp_path, 3.21))
    assert text.splitlines()[0].startswith("1 scenes compressed, 1 unchanged and skipped, 1 failed")
    assert "a.zip/x.tif: 1234 bytes, 0.5 bpp, PSNR min 41.2 dB" in text
    assert "FAILED c.tif: RasterioIOError: not a TIFF" in text
