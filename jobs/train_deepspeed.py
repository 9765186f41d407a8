"""Training without Ray: the same worker loop under DeepSpeed's own launcher.

For clusters run by a scheduler (Slurm, PBS, plain SSH) rather than Ray::

    deepspeed --hostfile infra/deepspeed/hostfile.example --module jobs.train_deepspeed \\
        --config configs/lambda_512.yaml --shards /shared/shards --out /shared/runs --gpu

Every rank runs this module; the world (hosts × slots) comes from the launcher. Rank 0
validates the inputs, creates the MLflow runs and shares their ids; all ranks train; rank 0
consolidates, saves and registers the result, exactly as ``ltchm train`` does on Ray.
Checkpoints go to ``{out}/lambda_{λ}/deepspeed``, which must be on a filesystem all nodes
share; relaunching the same command after a failure resumes from the last one, in the same
MLflow run. Several rate points (``--lambdas``) train one after another.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from jobs.train import (
    RunOutcome,
    build_parser,
    check_init,
    check_shards,
    close_plan,
    configs_from_args,
    finish,
    plan_runs,
    report,
)
from jobs.training.dsconfig import deepspeed_config
from ltchm.config import ConfigError, dump_config

__all__ = ["main"]

RUN_FILE = "mlflow_run.json"  # which MLflow run a relaunch continues


def _resumable_runs(plan_out: Path, lambdas: list[float]) -> dict[float, str]:
    """Run ids of rate points with a checkpoint from an earlier launch of the same job."""
    found = {}
    for lmbda in lambdas:
        folder = plan_out / f"lambda_{lmbda:g}"
        if (folder / RUN_FILE).is_file() and (folder / "deepspeed" / "latest").is_file():
            found[lmbda] = json.loads((folder / RUN_FILE).read_text())["run_id"]
    return found


def _prepare(args: Any) -> dict[str, Any]:
    """Rank 0: everything the other ranks need, or the error that stops them all."""
    from ltchm.tracking import TrackingError

    try:
        configs = configs_from_args(args)
        out = Path(configs[0].train.out).resolve()
        if args.no_tracking:
            shards = Path(args.shards).resolve()
            check_shards(shards)
            check_init(configs)
            for cfg in configs:
                deepspeed_config(cfg, cfg.train.workers, cfg.train.use_gpu)
            out.mkdir(parents=True, exist_ok=True)
            return {
                "uri": None,
                "shards": str(shards),
                "out": str(out),
                "parent": None,
                "runs": [None] * len(configs),
                "configs": [dump_config(c) for c in configs],
            }
        earlier = _resumable_runs(out, [c.loss.lmbda for c in configs])
        if earlier and len(earlier) == len(configs):
            from ltchm.tracking import check_tracking, resolve_tracking_uri

            uri = resolve_tracking_uri(configs[0].tracking.tracking_uri)
            check_tracking(uri)
            runs = [earlier[c.loss.lmbda] for c in configs]
            return {
                "uri": uri,
                "shards": str(Path(args.shards).resolve()),
                "out": str(out),
                "parent": None,
                "runs": runs,
                "configs": [dump_config(c) for c in configs],
            }
        plan = plan_runs(configs, args.shards)
        for cfg, rid in plan.runs:
            folder = plan.out_dir / f"lambda_{cfg.loss.lmbda:g}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / RUN_FILE).write_text(json.dumps({"run_id": rid}))
        return {
            "uri": plan.uri,
            "shards": str(plan.shards),
            "out": str(plan.out_dir),
            "parent": plan.parent_id,
            "runs": [rid for _, rid in plan.runs],
            "configs": [dump_config(c) for c, _ in plan.runs],
        }
    except (ConfigError, FileNotFoundError, TrackingError, ValueError) as exc:
        return {"error": str(exc)}


def main(argv: list[str] | None = None) -> int:
    import deepspeed
    import psutil
    import torch
    import torch.distributed as dist

    from jobs.train import TrainingPlan
    from jobs.training.dsops import use_extensions_dir
    from jobs.training.session import LauncherSession
    from jobs.training.worker import train_loop
    from ltchm.config import config_from_dict

    t_launch = psutil.Process().create_time()
    args = build_parser("python -m jobs.train_deepspeed", launcher=True).parse_args(argv)
    use_extensions_dir()
    use_gpu = bool(args.gpu)
    if use_gpu and not torch.cuda.is_available():
        print("jobs.train_deepspeed: --gpu given but no CUDA device is visible", file=sys.stderr)
        return 2
    deepspeed.init_distributed(dist_backend="nccl" if use_gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    args.workers = world  # the launcher decides the world size

    payload = [_prepare(args) if rank == 0 else None]
    dist.broadcast_object_list(payload, src=0)
    info = payload[0]
    assert info is not None  # every rank has rank 0's after the broadcast
    if "error" in info:
        if rank == 0:
            print(f"jobs.train_deepspeed: {info['error']}", file=sys.stderr)
        dist.destroy_process_group()
        return 2

    out = Path(info["out"])
    outcomes: list[RunOutcome] = []
    for dumped, rid in zip(info["configs"], info["runs"], strict=True):
        cfg = config_from_dict(dumped)
        session = LauncherSession(
            out / f"lambda_{cfg.loss.lmbda:g}" / "deepspeed", keep=cfg.train.keep_checkpoints
        )
        loop = {
            "config": dumped,
            "shards": info["shards"],
            "tracking_uri": info["uri"],
            "run_id": rid,
            "ds_config": deepspeed_config(cfg, world, use_gpu),
            "use_gpu": use_gpu,
            "snapshot_dir": str(out / f"lambda_{cfg.loss.lmbda:g}" / "snapshots"),
            "metrics_file": str(out / f"lambda_{cfg.loss.lmbda:g}" / "metrics.jsonl"),
            "t_launch": t_launch,
        }
        status = train_loop(loop, session)
        dist.barrier()
        if rank == 0:
            ckpt = session.ckpt_dir if (session.ckpt_dir / "latest").is_file() else None
            outcomes.append(finish(cfg, None, status, ckpt, info["uri"], rid, out))
    code = 0
    if rank == 0:
        plan = TrainingPlan(info["uri"], Path(info["shards"]), out, info["parent"], [])
        close_plan(plan, outcomes)
        code = report(outcomes)
    # an object, not a CPU tensor, which NCCL refuses (the first GPU run exited 1 here)
    flag = [code]
    dist.broadcast_object_list(flag, src=0)
    dist.destroy_process_group()
    return int(flag[0])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
