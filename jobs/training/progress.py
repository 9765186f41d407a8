"""The driver's live view of training: one line per rate point, fed by the workers' metrics.

The workers log to MLflow (batched, at least every 30 s); the driver reads each run's
latest values (``step``, ``loss``, ``bpp``, ``val_psnr``, ``seconds_per_step``) and prints
``λ 512: step 1200/6101 | loss 0.83 | bpp 0.310 | val PSNR 23.11 dB | 0.59 s/step | ETA 48
min``. On a terminal the lines are redrawn in place; in a log (``ray job submit``, batch
systems) a line per rate point whenever it changed, at most every ``interval`` seconds.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["ProgressWatcher", "RatePoint", "progress_line"]


@dataclass(frozen=True)
class RatePoint:
    lmbda: float
    run_id: str
    steps: int
    compiling: bool = False  # train.compile: the first step waits for the compilation


def _eta(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def progress_line(point: RatePoint, metrics: dict[str, float]) -> str:
    """One rate point's line from its latest metrics."""
    head = f"λ {point.lmbda:g}:"
    step = int(metrics.get("step", 0))
    if not step:
        first = ", compilation: minutes" if point.compiling else ""
        return f"{head} starting (workers, data, DeepSpeed{first})"
    parts = [f"{head} step {step}/{point.steps}"]
    if "loss" in metrics:
        parts.append(f"loss {metrics['loss']:.4g}")
    if "bpp" in metrics:
        parts.append(f"bpp {metrics['bpp']:.3f}")
    if "val_psnr" in metrics:
        parts.append(f"val PSNR {metrics['val_psnr']:.2f} dB")
    sps = metrics.get("seconds_per_step")
    if sps:
        parts.append(f"{sps:.2f} s/step")
        if step < point.steps:
            parts.append(f"ETA {_eta((point.steps - step) * sps)}")
    return " | ".join(parts)


class ProgressWatcher:
    """Polls the runs' latest metrics in a thread and prints their lines until stopped."""

    def __init__(
        self,
        uri: str,
        points: list[RatePoint],
        *,
        interval: float | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.uri, self.points = uri, points
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval if interval is not None else (2.0 if self.tty else 30.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ltchm-progress", daemon=True)
        self._shown: dict[str, str] = {}
        self._drawn = 0

    def __enter__(self) -> ProgressWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.poll(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a store that hiccups must not stop training
                continue

    def latest(self) -> dict[str, dict[str, float]]:
        from mlflow import MlflowClient

        client = MlflowClient(self.uri)
        out: dict[str, dict[str, float]] = {}
        for p in self.points:
            run: Any = client.get_run(p.run_id)
            out[p.run_id] = dict(run.data.metrics)
        return out

    def poll(self, final: bool = False) -> None:
        latest = self.latest()
        lines = [progress_line(p, latest.get(p.run_id, {})) for p in self.points]
        if self.tty:
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F")  # back to the first line drawn
            for line in lines:
                self.stream.write(f"\x1b[2K{line}\n")
            self._drawn = len(lines)
        else:
            for p, line in zip(self.points, lines, strict=True):
                if self._shown.get(p.run_id) != line:
                    self.stream.write(line + "\n")
                    self._shown[p.run_id] = line
        self.stream.flush()
