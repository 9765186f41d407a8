"""The evaluation's outputs: every point, the averaged RD points, BD and complexity tables,
plots, a summary and a Markdown report, each written atomically into one folder.

Files (all in ``out``):

* ``points.csv`` / ``points.json``: per image, codec and setting: bytes, bpp, psnr, ms_ssim,
  ms_ssim_db, lpips, vifp, encode/decode seconds, notes.
* ``rd.csv`` / ``rd.json``: per codec setting, the mean over images of bpp, PSNR (dB),
  MS-SSIM, LPIPS and VIFp; ``ms_ssim_db`` is the dB of the mean MS-SSIM (as CompressAI plots
  it). A metric undefined on some images (MS-SSIM at <= 160 px) is averaged over the images
  where it is defined; ``n_<metric>`` says over how many.
* ``bd.csv`` / ``bd.md``: BD-rate and BD-PSNR (and on MS-SSIM dB) against the anchor.
* ``complexity.csv`` / ``complexity.md`` when measured.
* ``rd_<metric>.png`` / ``.svg``; ``summary.json``; ``report.md``.

In JSON, undefined values (``nan``) are ``null`` and infinite PSNR (lossless) is ``"inf"``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ltchm.atomic import atomic_write_text
from ltchm.evaluation.bd import BD_FIELDS, bd_table, bd_table_markdown
from ltchm.evaluation.complexity import COMPLEXITY_FIELDS, complexity_markdown
from ltchm.evaluation.plots import plot_rd
from ltchm.evaluation.runner import RECORD_FIELDS
from ltchm.metrics import ms_ssim_db

__all__ = [
    "RD_FIELDS",
    "average_points",
    "json_ready",
    "write_csv",
    "write_json",
    "write_report",
]

RD_FIELDS = (
    "codec",
    "label",
    "setting_name",
    "setting",
    "images",
    "bytes",
    "bpp",
    "psnr",
    "ms_ssim",
    "ms_ssim_db",
    "lpips",
    "vifp",
    "n_ms_ssim",
    "n_lpips",
    "n_vifp",
)


def _mean(values: Sequence[float]) -> tuple[float, int]:
    """Mean over the defined (non-nan) values, and how many there were."""
    defined = [v for v in values if not math.isnan(v)]
    return (sum(defined) / len(defined) if defined else math.nan), len(defined)


def average_points(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One averaged RD point per (codec, setting), in the order the records come."""
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["codec"], r["setting"]), []).append(r)
    rows = []
    for (codec, setting), rs in groups.items():
        row: dict[str, Any] = {
            "codec": codec,
            "label": rs[0]["label"],
            "setting_name": rs[0]["setting_name"],
            "setting": setting,
            "images": len(rs),
            "bytes": sum(r["bytes"] for r in rs),
            "bpp": sum(r["bpp"] for r in rs) / len(rs),
            # a lossless image makes the mean PSNR infinite, as it should
            "psnr": sum(r["psnr"] for r in rs) / len(rs),
        }
        for metric in ("ms_ssim", "lpips", "vifp"):
            row[metric], row[f"n_{metric}"] = _mean([r[metric] for r in rs])
        row["ms_ssim_db"] = math.nan if math.isnan(row["ms_ssim"]) else ms_ssim_db(row["ms_ssim"])
        rows.append(row)
    return rows


def json_ready(value: Any) -> Any:
    """``value`` with nan -> None and +-inf -> "inf"/"-inf", so that the JSON is standard."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(json_ready(obj), indent=2, allow_nan=False) + "\n")


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    atomic_write_text(path, buf.getvalue())


def _markdown_rd(rd_rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| Codec | Setting | bpp | PSNR (dB) | MS-SSIM | MS-SSIM (dB) | LPIPS | VIFp |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]

    def f(v: float, digits: int) -> str:
        return "n/a" if math.isnan(v) else f"{v:.{digits}f}"

    for r in rd_rows:
        lines.append(
            f"| {r['label']} | {r['setting_name']} {r['setting']} | {r['bpp']:.4f} "
            f"| {f(r['psnr'], 2)} | {f(r['ms_ssim'], 4)} | {f(r['ms_ssim_db'], 2)} "
            f"| {f(r['lpips'], 4)} | {f(r['vifp'], 4)} |"
        )
    return "\n".join(lines) + "\n"


def write_report(
    out: str | Path,
    records: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    anchor: str = "jpeg2000",
    bd_method: str = "akima",
    complexity_rows: Sequence[dict[str, Any]] | None = None,
    learned: Sequence[str] = (),
) -> dict[str, Any]:
    """Write every output file into ``out``; returns the RD points, BD table and file paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rd_rows = average_points(records)
    codecs = list(dict.fromkeys(r["codec"] for r in rd_rows))
    bd_rows: list[dict[str, Any]] = []
    bd_md = ""
    if anchor in codecs:
        bd_rows = bd_table(rd_rows, anchor, bd_method)
        bd_md = bd_table_markdown(bd_rows, anchor, bd_method)
    else:
        bd_md = f"No BD table: the anchor {anchor!r} was not among the codecs {codecs}.\n"
    write_csv(out / "points.csv", records, RECORD_FIELDS)
    write_json(out / "points.json", list(records))
    write_csv(out / "rd.csv", rd_rows, RD_FIELDS)
    write_json(out / "rd.json", rd_rows)
    write_csv(out / "bd.csv", bd_rows, BD_FIELDS)
    atomic_write_text(out / "bd.md", bd_md)
    parts = [
        "# Rate-distortion evaluation",
        "",
        f"Data: {summary.get('data', '?')}; {summary.get('images', '?')} images.",
        "",
        "## BD-rate against the anchor (like Tab. 3)",
        "",
        bd_md,
    ]
    if complexity_rows is not None:
        write_csv(out / "complexity.csv", complexity_rows, COMPLEXITY_FIELDS)
        cx_md = complexity_markdown(complexity_rows)
        atomic_write_text(out / "complexity.md", cx_md)
        parts += ["## Complexity (like Tab. 6)", "", cx_md]
    plots = plot_rd(rd_rows, out, title=summary.get("title", ""), learned=learned)
    parts += ["## Averaged RD points", "", _markdown_rd(rd_rows), "## Plots", ""]
    parts += [f"![{p.stem}]({p.name})" for p in plots if p.suffix == ".png"]
    notes = summary.get("notes", [])
    if notes:
        parts += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    atomic_write_text(out / "report.md", "\n".join(parts) + "\n")
    write_json(out / "summary.json", summary)
    return {"rd": rd_rows, "bd": bd_rows, "plots": plots}
