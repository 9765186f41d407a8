"""Bjøntegaard deltas (BD-rate, BD-PSNR) against an anchor codec, as in the paper's Tab. 3.

The deltas are the ``bjontegaard`` package's (maintained, with Akima/PCHIP interpolation as
well as VCEG-M33's cubic fit). A curve it cannot take (fewer than two points, a metric that
does not rise with the rate, infinite or missing values, no overlap with the anchor) gets
``nan`` and a note saying why, never a number computed from a broken fit.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # bjontegaard imports pyplot; never pick a GUI backend here

import bjontegaard
import numpy as np

__all__ = ["BD_FIELDS", "bd_delta", "bd_table", "bd_table_markdown", "curve"]

BD_FIELDS = (
    "codec",
    "label",
    "points",
    "bd_rate_psnr",
    "bd_psnr",
    "bd_rate_ms_ssim_db",
    "bd_ms_ssim_db",
    "notes",
)


def curve(
    rd_rows: Sequence[dict[str, Any]], codec: str, metric: str
) -> tuple[list[float], list[float]]:
    """(bpp, metric) of one codec's averaged RD points, sorted by bpp."""
    pts = sorted((r["bpp"], r[metric]) for r in rd_rows if r["codec"] == codec)
    return [p[0] for p in pts], [p[1] for p in pts]


def bd_delta(
    anchor: tuple[Sequence[float], Sequence[float]],
    test: tuple[Sequence[float], Sequence[float]],
    method: str = "akima",
) -> tuple[float, float, str]:
    """(BD-rate in %, BD-metric in the metric's unit, note) of ``test`` against ``anchor``.

    Each curve is (rates, metric values). Negative BD-rate: the test codec needs fewer bits
    for the same quality.
    """
    problems = []
    for who, (rates, values) in (("anchor", anchor), ("test", test)):
        r, d = np.asarray(rates, float), np.asarray(values, float)
        if len(r) < 2:
            problems.append(f"{who} has {len(r)} point(s), needs >= 2")
        elif not (np.all(np.isfinite(r)) and np.all(np.isfinite(d))):
            problems.append(f"{who} has non-finite values")
        elif not (np.all(r > 0) and np.all(np.diff(r) > 0) and np.all(np.diff(d) > 0)):
            problems.append(f"{who} curve is not strictly increasing in both rate and metric")
    if problems:
        return math.nan, math.nan, "; ".join(problems)
    args = (anchor[0], anchor[1], test[0], test[1], method)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rate = float(bjontegaard.bd_rate(*args, require_matching_points=False))
        delta = float(bjontegaard.bd_psnr(*args, require_matching_points=False))
    note = "; ".join(dict.fromkeys(str(w.message) for w in caught))
    return rate, delta, note


def bd_table(
    rd_rows: Sequence[dict[str, Any]], anchor: str = "jpeg2000", method: str = "akima"
) -> list[dict[str, Any]]:
    """BD-rate/BD-PSNR and BD-rate/BD-MS-SSIM (dB) of every codec against ``anchor``.

    ``rd_rows`` are averaged RD points (``codec``, ``label``, ``bpp``, ``psnr``,
    ``ms_ssim_db``). The anchor's own row is computed too (0 by construction of the delta).
    """
    codecs = list(dict.fromkeys(r["codec"] for r in rd_rows))
    if anchor not in codecs:
        raise ValueError(f"BD anchor {anchor!r} was not evaluated (codecs: {codecs})")
    labels = {r["codec"]: r["label"] for r in rd_rows}
    table = []
    for codec in codecs:
        row: dict[str, Any] = {"codec": codec, "label": labels[codec]}
        row["points"] = sum(r["codec"] == codec for r in rd_rows)
        notes = []
        for metric, rate_key, delta_key in (
            ("psnr", "bd_rate_psnr", "bd_psnr"),
            ("ms_ssim_db", "bd_rate_ms_ssim_db", "bd_ms_ssim_db"),
        ):
            rate, delta, note = bd_delta(
                curve(rd_rows, anchor, metric), curve(rd_rows, codec, metric), method
            )
            row[rate_key], row[delta_key] = rate, delta
            if note:
                notes.append(f"{metric}: {note}")
        row["notes"] = "; ".join(notes)
        table.append(row)
    return table


def _fmt(value: float, unit: str) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.2f}{unit}"


def bd_table_markdown(table: Sequence[dict[str, Any]], anchor: str, method: str) -> str:
    """The table as Markdown, like the paper's Tab. 3."""
    lines = [
        f"BD-rate and BD-metric against {anchor} (Bjøntegaard, {method} interpolation; "
        "negative BD-rate = fewer bits for the same quality).",
        "",
        "| Codec | BD-rate (PSNR) | BD-PSNR | BD-rate (MS-SSIM dB) | BD-MS-SSIM | Notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['label']} | {_fmt(r['bd_rate_psnr'], ' %')} | {_fmt(r['bd_psnr'], ' dB')} "
            f"| {_fmt(r['bd_rate_ms_ssim_db'], ' %')} | {_fmt(r['bd_ms_ssim_db'], ' dB')} "
            f"| {r['notes'] or ''} |"
        )
    return "\n".join(lines) + "\n"
