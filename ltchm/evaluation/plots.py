"""Rate-distortion plots (PNG and SVG) of the averaged points, like the paper's Figs. 6-11."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ltchm.atomic import atomic_path

__all__ = ["PLOT_METRICS", "plot_rd"]

# metric -> (axis label, lower is better)
PLOT_METRICS: dict[str, tuple[str, bool]] = {
    "psnr": ("PSNR (dB)", False),
    "ms_ssim_db": ("MS-SSIM (dB)", False),
    "lpips": ("LPIPS (AlexNet)", True),
    "vifp": ("VIFp", False),
}
_MARKERS = "os^Dv<>pP*Xh"


def _figure(
    rd_rows: Sequence[dict[str, Any]], metric: str, title: str, learned: Collection[str]
) -> Figure | None:
    label, lower_better = PLOT_METRICS[metric]
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    codecs = list(dict.fromkeys(r["codec"] for r in rd_rows))
    drawn = 0
    for k, codec in enumerate(codecs):
        pts = sorted(
            (r["bpp"], r[metric], r["label"])
            for r in rd_rows
            if r["codec"] == codec and math.isfinite(r[metric])
        )
        if not pts:
            continue
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker=_MARKERS[k % len(_MARKERS)],
            # classical codecs dashed, learned ones solid, as in the paper's figures
            linestyle="-" if codec in learned else "--",
            label=pts[0][2],
        )
        drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("bits per pixel (bpp)")
    ax.set_ylabel(label + (" ↓" if lower_better else " ↑"))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_rd(
    rd_rows: Sequence[dict[str, Any]],
    out_dir: str | Path,
    title: str = "",
    learned: Collection[str] = (),
) -> list[Path]:
    """Write ``rd_<metric>.png`` and ``.svg`` for each metric with finite values.

    A metric with no finite value at all (e.g. LPIPS when not computed, MS-SSIM on images of
    160 px or less) gets no plot rather than an empty one. Curves of the ``learned`` codecs
    are solid, the classical ones dashed.
    """
    out_dir = Path(out_dir)
    written = []
    for metric in PLOT_METRICS:
        fig = _figure(rd_rows, metric, title, learned)
        if fig is None:
            continue
        for ext in ("png", "svg"):
            path = out_dir / f"rd_{metric}.{ext}"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext, dpi=150)
            written.append(path)
    return written
