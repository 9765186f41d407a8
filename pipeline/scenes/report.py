"""A batch's report: one row per scene (``report.csv``, ``report.json``) and its summary."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltchm.atomic import atomic_write_text

if TYPE_CHECKING:
    from pipeline.scenes.verify import BandErrors

__all__ = [
    "REPORT_FIELDS",
    "CompressResult",
    "failed_row",
    "psnr_fields",
    "summary",
    "write_report",
]

REPORT_FIELDS = (
    "scene", "status", "output", "width", "height", "bands", "dtype", "tiles", "bytes", "bpp",
    "psnr_db", "psnr_min_db", "psnr_peak", "max_error", "psnr_floor", "max_abs_error",
    "residual_tiles", "target_psnr", "target_bpp", "target_met", "tile_models", "unmet_tiles",
    "seconds", "encode_seconds", "verify_seconds",
    "source_sha256", "output_sha256", "error",
)  # fmt: skip


@dataclass
class CompressResult:
    """The rows of a batch (in input order, then the inputs that could not be used)."""

    rows: list[dict[str, Any]]
    out_dir: Path
    seconds: float

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]


def failed_row(name: str, reason: str, seconds: float | None = None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(REPORT_FIELDS)
    row.update(scene=name, status="failed", error=reason, seconds=seconds and round(seconds, 3))
    return row


def psnr_fields(errors: BandErrors, dtype: str) -> dict[str, Any]:
    """The PSNR columns of a verified scene: per band, the lowest, and the peaks used."""
    from pipeline.scenes.verify import psnr_db

    psnr, peaks = psnr_db(errors, dtype)
    finite = [p for p in psnr if p is not None]
    return {
        "psnr_db": [None if p is None else (p if math.isinf(p) else round(p, 3)) for p in psnr],
        "psnr_min_db": round(min(finite), 3) if finite else None,
        "psnr_peak": peaks,
        "max_abs_error": [
            m if n else None for m, n in zip(errors.max_abs, errors.count, strict=True)
        ],
    }


def write_report(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    """``report.csv`` (lists as ``;``-joined cells) and ``report.json``, each atomically."""

    def cell(v: Any) -> Any:
        if isinstance(v, list):
            return ";".join("" if x is None else str(x) for x in v)
        return "" if v is None else v

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=REPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: cell(r.get(k)) for k in REPORT_FIELDS})
    atomic_write_text(out_dir / "report.csv", buf.getvalue())

    def jsonable(v: Any) -> Any:
        if isinstance(v, float) and math.isinf(v):
            return "inf"
        if isinstance(v, list):
            return [jsonable(x) for x in v]
        return v

    data = [{k: jsonable(r.get(k)) for k in REPORT_FIELDS} for r in rows]
    atomic_write_text(out_dir / "report.json", json.dumps(data, indent=1))


def summary(result: CompressResult) -> str:
    """What the command prints at the end: counts, one line per scene, the report's paths."""
    done = [r for r in result.rows if r["status"] == "done"]
    skipped = [r for r in result.rows if r["status"] == "skipped"]
    lines = [
        f"{len(done)} scenes compressed, {len(skipped)} unchanged and skipped, "
        f"{len(result.failed)} failed, in {result.seconds:.1f} s -> {result.out_dir}"
    ]
    for r in done:
        psnr = "" if r["psnr_min_db"] is None else f", PSNR min {r['psnr_min_db']} dB"
        lines.append(f"  {r['scene']}: {r['bytes']} bytes, {r['bpp']} bpp{psnr}")
    for r in result.failed:
        lines.append(f"  FAILED {r['scene']}: {r['error']}")
    lines.append(f"report: {result.out_dir / 'report.csv'}, {result.out_dir / 'report.json'}")
    return "\n".join(lines)
