"""``ltchm train``: DeepSpeed trains LTCHM on Ray, tracked and registered in MLflow.

    ltchm train --config configs/lambda_512.yaml --shards shards/ --workers 2
    ltchm train --lambdas all --shards shards/ --workers 2          # the six rate points
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m jobs.train --config configs/lambda_512.yaml --shards /data/shards --workers 4

Each rate point is one Ray Train ``TorchTrainer`` whose workers run DeepSpeed
(:mod:`jobs.training.worker`); checkpoints go through Ray Train, so a killed worker restarts
the group from the last one. After training, the DeepSpeed checkpoint is consolidated into
one fp32 state dict, saved as a codec checkpoint, logged to the lambda's MLflow run and
registered as a new version of ``{registered_model}-lambda{L}`` with the alias
``candidate``. ``--lambdas all`` runs the six rate points under one parent run, concurrently
when the cluster has the CPUs/GPUs for several, one after another otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.training.dsconfig import deepspeed_config
from ltchm.atomic import check_output_dir
from ltchm.cli_options import (
    add_address,
    add_config,
    add_progress,
    add_tracking_uri,
    config_default,
)
from ltchm.config import LAMBDAS, Config, ConfigError, dump_config, load_config
from ltchm.paths import REPO_ROOT

__all__ = [
    "RunOutcome",
    "TrainingPlan",
    "build_parser",
    "check_init",
    "check_shards",
    "close_plan",
    "configs_from_args",
    "finish",
    "main",
    "plan_runs",
    "rate_point_configs",
    "report",
    "train",
]


@dataclass
class RunOutcome:
    lmbda: float
    run_id: str | None
    status: str  # "ok", "nan", "failed"
    message: str = ""
    checkpoint: Path | None = None
    registered: tuple[str, str] | None = None
    step: int = 0


def rate_point_configs(
    lambdas: str | Sequence[int] | None = None,
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> list[Config]:
    """The configs of the rate points to train.

    ``lambdas``: ``"all"``, a comma list (``"128,512"``) or ints: each rate point's
    ``configs/lambda_{λ}.yaml`` with ``config`` on top; ``None``: ``config`` alone.
    ``overrides``: dotted keys (``{"train.steps": 100}``), ``None`` values ignored.
    """
    overrides = dict(overrides or {})
    if not lambdas:
        if config is None:
            raise ConfigError("give --config FILE (e.g. configs/lambda_512.yaml) or --lambdas")
        return [load_config(config, overrides)]
    if lambdas == "all":
        chosen = list(LAMBDAS)
    elif isinstance(lambdas, str):
        try:
            chosen = [int(v) for v in lambdas.split(",")]
        except ValueError:
            raise ConfigError(f"--lambdas: {lambdas!r} is not 'all' or a list") from None
    else:
        chosen = [int(v) for v in lambdas]
    unknown = sorted(set(chosen) - set(LAMBDAS))
    if unknown:
        raise ConfigError(f"--lambdas: no config for {unknown}; the rate points are {LAMBDAS}")
    configs = []
    for lmbda in chosen:
        files: list[str | Path] = [REPO_ROOT / "configs" / f"lambda_{lmbda}.yaml"]
        if config is not None:
            files.append(config)  # the user's settings on top of the rate point's
        configs.append(load_config(files, {**overrides, "loss.lmbda": float(lmbda)}))
    return configs


def check_init(configs: list[Config]) -> None:
    """Raise ``FileNotFoundError`` for a ``train.init_from`` file that does not exist; make
    an existing one absolute (workers do not run in the command's folder)."""
    for cfg in configs:
        spec = cfg.train.init_from
        if not spec or ":/" in spec or spec.startswith("pretrained:"):
            continue  # a URI (models:/, runs:/) or a shipped set: resolved where it is loaded
        if not Path(spec).is_file():
            raise FileNotFoundError(f"train.init_from: no such checkpoint: {spec}")
        cfg.train.init_from = str(Path(spec).resolve())


def check_shards(shards: Path, checksums: bool = True) -> None:
    """Raise ``FileNotFoundError`` unless ``shards`` is a finished preprocessing output, and
    ``ValueError`` when a train or val shard differs from its manifest."""
    from pipeline.loader import shard_urls, verify_shards

    if not shards.exists():
        raise FileNotFoundError(f"shards not found: {shards}")
    urls = shard_urls(shards, "train")  # raises on a folder without manifest or train shards
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise FileNotFoundError(f"{shards}: the manifest lists missing shards: {missing[:3]}")
    if shards.is_dir():
        verify_shards(shards, ("train", "val"), checksums=checksums)


def cpus_per_worker(cfg: Config) -> int:
    """``train.cpus_per_worker``, or when it is None each node's CPUs shared by the workers
    that land on it (Ray must be initialised)."""
    if cfg.train.cpus_per_worker is not None:
        return cfg.train.cpus_per_worker
    import ray

    cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    cpus = [c for c in cpus if c > 0] or [1]
    per_node = -(-cfg.train.workers // len(cpus))  # workers spread over the nodes
    return max(1, min(cpus) // per_node)


def _parallel_runs(configs: list[Config]) -> int:
    import ray

    total = ray.cluster_resources()
    cfg = configs[0].train
    need_cpu = cfg.workers * cpus_per_worker(configs[0])
    fit = int(total.get("CPU", 0) // need_cpu)
    if cfg.use_gpu:
        fit = min(fit, int(total.get("GPU", 0) // cfg.workers))
    return max(1, min(fit, len(configs)))


def remove_orphan_checkpoints(run_dir: Path) -> list[str]:
    """Remove checkpoint folders Ray Train never registered (a worker killed while writing
    one); return their names. Only while no trainer writes there: before and after a fit."""
    import shutil

    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    if not run_dir.is_dir():
        return []
    try:
        registered = {
            c["checkpoint_dir_name"]
            for c in json.loads(snapshot.read_text()).get("checkpoint_results", [])
        }
    except FileNotFoundError:
        registered = set()
    except (json.JSONDecodeError, KeyError, TypeError):
        return []  # Ray's own state unreadable: touch nothing
    orphans = sorted(
        p.name for p in run_dir.glob("checkpoint_*") if p.is_dir() and p.name not in registered
    )
    for name in orphans:
        shutil.rmtree(run_dir / name, ignore_errors=True)
    return orphans


def _fit(
    cfg: Config,
    shards: Path,
    uri: str,
    run_id: str | None,
    storage: Path,
    max_failures: int,
    t_launch: float | None = None,
) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from jobs.training.worker import train_loop_per_worker

    use_gpu = cfg.train.use_gpu
    ds_config = deepspeed_config(cfg, cfg.train.workers, use_gpu)
    cpus = cpus_per_worker(cfg)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": dump_config(cfg),
            "shards": str(shards),
            "tracking_uri": uri,
            "run_id": run_id,
            "ds_config": ds_config,
            "use_gpu": use_gpu,
            "threads": cpus,
            "snapshot_dir": str(storage.parent / f"lambda_{cfg.loss.lmbda:g}" / "snapshots"),
            "t_launch": t_launch,
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=cfg.train.workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cpus} | ({"GPU": 1} if use_gpu else {}),
        ),
        run_config=RunConfig(
            name=f"lambda_{cfg.loss.lmbda:g}",
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
        ),
    )
    run_dir = storage / f"lambda_{cfg.loss.lmbda:g}"
    remove_orphan_checkpoints(run_dir)  # a resumed run: what a killed writer left
    try:
        return trainer.fit()
    finally:
        remove_orphan_checkpoints(run_dir)  # a worker killed while writing, in this run


def _finish_ray(
    cfg: Config, result: Any, uri: str, run_id: str | None, out_dir: Path
) -> RunOutcome:
    """:func:`finish` for the result of a Ray Train run."""
    from mlflow import MlflowClient

    from jobs.training.worker import STOPPED_TAG

    metrics = dict(result.metrics or {})
    if run_id:
        stopped = MlflowClient(uri).get_run(run_id).data.tags.get(STOPPED_TAG)
        if stopped:
            metrics.update(json.loads(stopped))
    if result.checkpoint is None:
        return finish(cfg, result.error, metrics, None, uri, run_id, out_dir)
    with result.checkpoint.as_directory() as d:
        return finish(cfg, result.error, metrics, Path(d), uri, run_id, out_dir)


def run_params(cfg: Config) -> dict[str, str]:
    """The run's MLflow params: the config flattened, without the model keys its model does
    not take (``model.mixture`` means nothing to TCM: logging the default would say it did)."""
    from jobs.training.tracking import flatten
    from ltchm.zoo import accepted_keys

    takes = {"name", *accepted_keys(cfg.model.name)}
    return {
        k: v
        for k, v in flatten(dump_config(cfg)).items()
        if not k.startswith("model.") or k.removeprefix("model.") in takes
    }


def failure_text(error: BaseException | str) -> str:
    """What to tell the user of a failed run: a :class:`~pipeline.loader.ShardError` met
    anywhere in the chain (Ray Train wraps the worker's exception twice) as its one line,
    else the error as Ray Train reports it."""
    from pipeline.loader import ShardError, shard_message

    seen: set[int] = set()
    todo: list[object] = [error]
    while todo:
        exc = todo.pop()
        if not isinstance(exc, BaseException) or id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, ShardError):
            return shard_message(exc)
        todo += [exc.__cause__, exc.__context__, getattr(exc, "cause", None)]
        todo += list(getattr(exc, "worker_failures", {}).values())
    # the worker's exception may reach us only as text (Ray Train's WorkerGroupError)
    text = str(error)
    return shard_message(RuntimeError(text)) if "ShardError: " in text else text


def finish(
    cfg: Config,
    error: Any,
    metrics: dict[str, Any],
    ckpt_dir: Path | None,
    uri: str,
    run_id: str | None,
    out_dir: Path,
) -> RunOutcome:
    """Consolidate the DeepSpeed checkpoint in ``ckpt_dir``, save it as a codec checkpoint,
    log and register it; or record why there is nothing to register."""
    from jobs.training.consolidate import consolidate
    from ltchm.codec import load_checkpoint, save_checkpoint
    from ltchm.zoo import model_from_config

    lmbda = cfg.loss.lmbda
    client = None
    if run_id:  # MLflow is imported only where a run is tracked (the launcher can go without)
        from mlflow import MlflowClient

        client = MlflowClient(uri)
    if error is not None:
        outcome = RunOutcome(lmbda, run_id, "failed", f"training failed: {failure_text(error)}")
    elif "data_error" in metrics:
        outcome = RunOutcome(
            lmbda,
            run_id,
            "failed",
            f"training failed: {metrics['data_error']}",
            step=int(metrics.get("step", 0)),
        )
    elif "nan_at_step" in metrics:
        good = ckpt_dir if ckpt_dir is not None else "none"
        outcome = RunOutcome(
            lmbda,
            run_id,
            "nan",
            f"non-finite {metrics.get('non_finite', 'loss')} at step {metrics['nan_at_step']}: "
            f"training stopped; the last good checkpoint is {good}",
            step=int(metrics.get("step", 0)),
        )
    elif ckpt_dir is None:
        outcome = RunOutcome(lmbda, run_id, "failed", "training produced no checkpoint")
    else:
        state = consolidate(ckpt_dir)
        model = model_from_config(cfg.model)
        model.load_state_dict(state, strict=False)
        ckpt = out_dir / f"lambda_{lmbda:g}" / "model.pt"
        digest = save_checkpoint(
            model,
            ckpt,
            lmbda=lmbda,
            metadata={"run_id": run_id or "", "step": int(metrics.get("step", 0))},
        )
        load_checkpoint(ckpt)  # the saved model loads and is ready to code
        registered = None
        if run_id:
            from jobs.training.tracking import log_and_register_model

            registered = log_and_register_model(uri, run_id, ckpt, cfg, digest)
        outcome = RunOutcome(lmbda, run_id, "ok", "", ckpt, registered, int(metrics["step"]))
    if client is not None and run_id:
        if outcome.message:
            client.set_tag(run_id, "ltchm.error", outcome.message[:5000])
        client.set_terminated(run_id, "FINISHED" if outcome.status == "ok" else "FAILED")
    return outcome


@dataclass
class TrainingPlan:
    """The tracked runs of one ``ltchm train`` invocation, created before any training."""

    uri: str
    shards: Path
    out_dir: Path
    parent_id: str | None
    runs: list[tuple[Config, str]]


def plan_runs(configs: list[Config], shards: Path) -> TrainingPlan:
    """Validate everything that can be validated, then create the MLflow runs.

    Raises before any training starts on missing shards, an invalid DeepSpeed setup or an
    unusable tracking store.
    """
    import mlflow

    from ltchm.tracking import check_tracking, ensure_experiment, resolve_tracking_uri

    shards = Path(shards).resolve()
    base = configs[0]
    check_output_dir(base.train.out, shards)
    check_shards(shards, checksums=base.data.verify_shards)
    check_init(configs)
    for cfg in configs:
        deepspeed_config(cfg, cfg.train.workers, cfg.train.use_gpu)
    uri = resolve_tracking_uri(base.tracking.tracking_uri)
    check_tracking(uri)
    exp_id = ensure_experiment(uri, base.tracking.experiment, base.tracking.artifact_location)
    out_dir = Path(base.train.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    client = mlflow.MlflowClient(uri)
    parent_id = None
    if len(configs) > 1:
        lambdas = ",".join(f"{c.loss.lmbda:g}" for c in configs)
        parent = client.create_run(
            exp_id, run_name=f"sweep {lambdas}", tags={"ltchm.kind": "sweep"}
        )
        parent_id = parent.info.run_id
        client.log_param(parent_id, "lambdas", lambdas)
    runs = []
    for cfg in configs:
        tags = {"ltchm.kind": "train", "lmbda": f"{cfg.loss.lmbda:g}"}
        if parent_id is not None:
            tags["mlflow.parentRunId"] = parent_id
        run = client.create_run(exp_id, run_name=f"lambda_{cfg.loss.lmbda:g}", tags=tags)
        rid = run.info.run_id
        for key, value in run_params(cfg).items():
            client.log_param(rid, key, value[:6000])
        ds = deepspeed_config(cfg, cfg.train.workers, cfg.train.use_gpu)
        client.log_dict(rid, ds, "deepspeed_config.json")
        client.log_dict(rid, dump_config(cfg), "config.json")
        runs.append((cfg, rid))
    return TrainingPlan(uri, shards, out_dir, parent_id, runs)


def close_plan(plan: TrainingPlan, outcomes: list[RunOutcome]) -> None:
    """Mark the parent run of a sweep finished or failed."""
    if plan.parent_id is not None:
        import mlflow

        ok = all(o.status == "ok" for o in outcomes)
        mlflow.MlflowClient(plan.uri).set_terminated(plan.parent_id, "FINISHED" if ok else "FAILED")


def train(
    configs: Sequence[Config],
    shards: str | Path,
    *,
    address: str | None = None,
    max_failures: int = 3,
    verbose: bool = False,
    t_launch: float | None = None,
    progress: bool = True,
) -> list[RunOutcome]:
    """Train each config (a rate point) on Ray; return their outcomes.

    Args:
        configs: from :func:`rate_point_configs` (or :func:`ltchm.config.load_config`).
        shards: the output folder of ``ltchm preprocess``.
        address: the Ray cluster; default ``$RAY_ADDRESS``, else a private local Ray.
        max_failures: worker-group restarts allowed per rate point.
        verbose: show the workers' logs and the libraries' notices (Ray, MLflow).
        progress: a live line per rate point (step, loss, bpp, val PSNR, s/step, ETA).
        t_launch: when the command started (epoch seconds), to log the time to the first
            step.
    """
    import mlflow
    import ray

    configs = list(configs)
    plan = plan_runs(configs, Path(shards))
    uri, shards, out_dir, runs = plan.uri, plan.shards, plan.out_dir, plan.runs
    base = configs[0]
    client = mlflow.MlflowClient(uri)

    if not verbose:
        _quiet_libraries()
    if not ray.is_initialized():
        from jobs.ray_cluster import init_ray

        # Ray's own notices (token authentication, the dashboard's address) only on --verbose
        init_ray(
            address,
            log_to_driver=verbose,
            logging_level=logging.INFO if verbose else logging.ERROR,
        )
    storage = out_dir / "ray"
    parallel = _parallel_runs(configs)
    print(
        f"training {len(runs)} rate point(s), {parallel} at a time, {base.train.workers} "
        f"worker(s) each; MLflow: {uri}",
        flush=True,
    )

    def one(item: tuple[Config, str]) -> RunOutcome:
        cfg, rid = item
        try:
            result = _fit(cfg, shards, uri, rid, storage, max_failures, t_launch)
            return _finish_ray(cfg, result, uri, rid, out_dir)
        except Exception as exc:  # a failed rate point must not stop the others
            client.set_tag(rid, "ltchm.error", str(exc)[:5000])
            client.set_terminated(rid, "FAILED")
            why = failure_text(exc)
            if why == str(exc):
                why = f"{type(exc).__name__}: {exc}"
            return RunOutcome(cfg.loss.lmbda, rid, "failed", f"training failed: {why}")

    from jobs.training.progress import ProgressWatcher, RatePoint

    points = [
        RatePoint(cfg.loss.lmbda, rid, cfg.train.steps, cfg.train.compile) for cfg, rid in runs
    ]
    watcher = ProgressWatcher(uri, points) if progress else contextlib.nullcontext()
    with watcher, ThreadPoolExecutor(max_workers=parallel) as pool:
        outcomes = list(pool.map(one, runs))
    close_plan(plan, outcomes)
    return outcomes


def _quiet_libraries() -> None:
    """Keep notices meant for library developers out of the user's terminal: Ray's token and
    dashboard lines, MLflow's database set-up and model-signature warnings (``--verbose``
    shows them)."""
    import warnings

    for name in ("ray", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"mlflow\..*")


def configs_from_args(args: argparse.Namespace) -> list[Config]:
    """The configs a parsed ``ltchm train`` (or ``jobs.train_deepspeed``) command asks for."""
    overrides = {
        "train.steps": args.steps,
        "model.N": args.N,
        "model.context": args.context,
        "train.workers": getattr(args, "workers", None),
        "train.batch_size": args.batch_size,
        "train.patch_size": args.patch_size,
        "train.checkpoint_every": args.checkpoint_every,
        "train.val_every": args.val_every,
        "train.init_from": str(args.init_from) if args.init_from else None,
        "train.use_gpu": True if args.gpu else None,
        "train.compile": args.compile,
        "tracking.tracking_uri": args.tracking_uri,
        "tracking.experiment": args.experiment,
        "train.out": str(args.out) if args.out else None,
    }
    return rate_point_configs(args.lambdas, args.config, overrides)


def build_parser(prog: str = "ltchm train", launcher: bool = False) -> argparse.ArgumentParser:
    """The options of ``ltchm train``, or with ``launcher`` those of ``jobs.train_deepspeed``."""
    description = (
        "Train LTCHM under DeepSpeed's launcher (no Ray)."
        if launcher
        else "Train LTCHM with DeepSpeed on Ray."
    )
    p = argparse.ArgumentParser(prog=prog, description=description)
    add_config(p, help="config file (e.g. configs/lambda_512.yaml)")
    p.add_argument("--shards", type=Path, required=True, help="output folder of ltchm preprocess")
    p.add_argument(
        "--lambdas", help="'all' or a comma list, e.g. 128,512 (uses configs/lambda_*.yaml)"
    )
    if not launcher:
        p.add_argument(
            "--workers",
            type=int,
            help=f"Ray Train workers (DeepSpeed ranks) per rate point "
            f"{config_default('train.workers')}",
        )
    p.add_argument(
        "--steps", type=int, help=f"optimiser steps per rate point {config_default('train.steps')}"
    )
    p.add_argument("--N", type=int, help=f"channels {config_default('model.N')}")
    p.add_argument(
        "--context",
        choices=("autoregressive", "checkerboard"),
        help="context model: autoregressive (the paper's, slow to decode on CPU) or "
        "checkerboard (two passes, decodes several times faster); default: the config's",
    )
    p.add_argument(
        "--batch-size", type=int, help=f"global batch {config_default('train.batch_size')}"
    )
    p.add_argument("--patch-size", type=int, help=f"crop side {config_default('train.patch_size')}")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        help=f"steps between checkpoints {config_default('train.checkpoint_every')}",
    )
    p.add_argument(
        "--val-every",
        type=int,
        help=f"steps between validations {config_default('train.val_every')}",
    )
    p.add_argument(
        "--init-from",
        help="start from this model's weights (checkpoint or models:/ URI): fine-tuning",
    )
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, bf16")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch.compile the training forward: faster steps after a few minutes of "
        f"compilation {config_default('train.compile')}",
    )
    add_tracking_uri(p)
    p.add_argument(
        "--experiment", help=f"MLflow experiment {config_default('tracking.experiment')}"
    )
    p.add_argument(
        "--out",
        type=Path,
        help=f"folder for checkpoints and Ray's run state {config_default('train.out')}",
    )
    if launcher:
        p.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)  # set by the launcher
        p.add_argument(
            "--no-tracking",
            action="store_true",
            help="no MLflow: metrics go to {out}/lambda_{L}/metrics.jsonl, nothing is registered",
        )
    else:
        add_address(p)
        p.add_argument("--max-failures", type=int, default=3, help="worker-group restarts allowed")
        p.add_argument(
            "--verbose",
            action="store_true",
            help="show the workers' logs and Ray's, MLflow's and DeepSpeed's notices",
        )
        add_progress(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ltchm.tracking import TrackingError

    try:
        outcomes = train(
            configs_from_args(args),
            args.shards,
            address=args.address,
            max_failures=args.max_failures,
            verbose=args.verbose,
            t_launch=_process_start(),
            progress=not args.no_progress,
        )
    except (ConfigError, FileNotFoundError, TrackingError, ValueError) as exc:
        print(f"ltchm train: {exc}", file=sys.stderr)
        return 2
    return report(outcomes)


def _process_start() -> float:
    """When this process started (epoch seconds): includes interpreter start and imports."""
    import psutil

    return float(psutil.Process().create_time())


def report(outcomes: list[RunOutcome]) -> int:
    """Print one line per rate point; the exit status."""
    width = max(len(f"{o.lmbda:g}") for o in outcomes)
    for o in outcomes:
        if o.status == "ok":
            reg = (
                f", registered {o.registered[0]} v{o.registered[1]} @candidate"
                if o.registered
                else ""
            )
            print(f"lambda {o.lmbda:<{width}g}: ok at step {o.step}, {o.checkpoint}{reg}")
        else:
            print(f"lambda {o.lmbda:<{width}g}: {o.status}: {o.message}", file=sys.stderr)
    print(json.dumps({f"{o.lmbda:g}": o.status for o in outcomes}))
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
