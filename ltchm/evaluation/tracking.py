"""MLflow records of an evaluation: one comparison run, and the hook for the models' runs.

The comparison run holds the whole output folder as artifacts (tables, plots, points), the
BD deltas and the averaged RD curves as metrics (step = position along the curve, by bpp), and
what was compared as parameters. :func:`log_to_model_runs` adds each learned model's RD point
to the MLflow run that trained it (the λ child runs of the training job), when the model's
identity names that run.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from ltchm.tracking import ensure_experiment

__all__ = ["KIND_TAG", "log_comparison_run", "log_to_model_runs", "rd_metrics"]

KIND_TAG = "ltchm.kind"
_RD_METRICS = ("bpp", "psnr", "ms_ssim", "ms_ssim_db", "lpips", "vifp")
_BD_METRICS = ("bd_rate_psnr", "bd_psnr", "bd_rate_ms_ssim_db", "bd_ms_ssim_db")
_PARAM_MAX = 6000  # MLflow's limit on a parameter value


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def rd_metrics(
    rd_rows: Sequence[dict[str, Any]], bd_rows: Sequence[dict[str, Any]]
) -> list[tuple[str, float, int]]:
    """(key, value, step) of the averaged RD curves and the BD table; non-finite values left out.

    Curves are ``rd.<codec>.<metric>`` with step = position by increasing bpp; BD values are
    ``<bd metric>.<codec>``.
    """
    out = []
    codecs = list(dict.fromkeys(r["codec"] for r in rd_rows))
    for codec in codecs:
        pts = sorted((r for r in rd_rows if r["codec"] == codec), key=lambda r: r["bpp"])
        for step, r in enumerate(pts):
            out += [(f"rd.{codec}.{m}", r[m], step) for m in _RD_METRICS if _finite(r[m])]
    for b in bd_rows:
        out += [(f"{m}.{b['codec']}", b[m], 0) for m in _BD_METRICS if _finite(b[m])]
    return out


def _key(name: Any) -> str:
    """An MLflow key: model URIs (``models:/name@alias``) carry characters MLflow refuses."""
    return re.sub(r"[^\w\-. :/]", "_", str(name))


def log_comparison_run(
    tracking_uri: str,
    experiment: str,
    out_dir: str | Path,
    params: Mapping[str, Any],
    rd_rows: Sequence[dict[str, Any]],
    bd_rows: Sequence[dict[str, Any]],
    run_name: str = "evaluate",
    artifact_location: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Create the comparison run, log everything, upload ``out_dir``; returns the run id."""
    client = MlflowClient(tracking_uri)
    exp_id = ensure_experiment(tracking_uri, experiment, artifact_location)
    run = client.create_run(
        exp_id, run_name=run_name, tags={KIND_TAG: "evaluation-comparison", **(tags or {})}
    )
    run_id: str = run.info.run_id
    try:
        now = int(time.time() * 1000)
        metrics = [Metric(_key(k), float(v), now, s) for k, v, s in rd_metrics(rd_rows, bd_rows)]
        plist = [Param(_key(k), str(v)[:_PARAM_MAX]) for k, v in params.items()]
        # MLflow takes at most 1000 metrics and 100 params per batch.
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
        for i in range(0, len(plist), 100):
            client.log_batch(run_id, params=plist[i : i + 100])
        client.log_artifacts(run_id, str(out_dir))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def log_to_model_runs(
    tracking_uri: str,
    rd_rows: Sequence[dict[str, Any]],
    source_runs: Mapping[tuple[str, Any], str],
    comparison_run_id: str | None = None,
) -> list[str]:
    """Log each learned model's averaged RD point to the run that trained it.

    Args:
        source_runs: (codec, setting) -> MLflow run id of the model behind that RD point
            (``LearnedCodec.source_run_id``; the training job's λ child runs).
        comparison_run_id: tagged on each model run, to find the comparison from it.

    Returns the run ids logged to. Metrics are ``eval.<metric>``.
    """
    client = MlflowClient(tracking_uri)
    logged = []
    now = int(time.time() * 1000)
    for r in rd_rows:
        run_id = source_runs.get((r["codec"], r["setting"]))
        if run_id is None:
            continue
        metrics = [Metric(f"eval.{m}", float(r[m]), now, 0) for m in _RD_METRICS if _finite(r[m])]
        tags = [RunTag("ltchm.evaluation.images", str(r["images"]))]
        if comparison_run_id:
            tags.append(RunTag("ltchm.evaluation.comparison_run", comparison_run_id))
        client.log_batch(run_id, metrics=metrics, tags=tags)
        logged.append(run_id)
    return logged
