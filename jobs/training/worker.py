"""The loop every Ray Train worker runs: DeepSpeed on LTCHM over the WebDataset shards."""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import torch
import torch.distributed as dist

from jobs.training.session import Session
from ltchm.config import config_from_dict
from ltchm.layers.precision import keep_in_float32
from ltchm.losses import RateDistortionLoss
from ltchm.optim import learning_rate, split_parameters
from ltchm.zoo import model_from_config
from pipeline.loader import (
    CorruptShardError,
    ShardError,
    iter_images,
    make_train_loader,
    shard_message,
)

__all__ = ["STOPPED_TAG", "train_loop", "train_loop_per_worker"]

# Set on the MLflow run when the workers stop the run themselves (non-finite values, a corrupt
# shard): Ray Train keeps the metrics of checkpointed reports only, so the driver reads why here.
STOPPED_TAG = "ltchm.stopped"


class JsonlLogger:
    """Metrics as JSON lines (``{"step": n, "loss": ...}``) where no MLflow run is kept."""

    def __init__(self, path: str) -> None:
        from pathlib import Path

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pending: list[str] = []

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._pending.append(json.dumps({"step": step, **metrics}))
        if len(self._pending) >= 50:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            with self.path.open("a") as f:
                f.write("\n".join(self._pending) + "\n")
            self._pending = []


def _on_every_rank(ok: bool) -> bool:
    """Whether ``ok`` holds on every rank (all ranks must stop together)."""
    # NCCL reduces CUDA tensors only (the first GPU run stopped on a CPU flag here)
    device = torch.device("cuda", torch.cuda.current_device()) if _nccl() else None
    flag = torch.tensor([1.0 if ok else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() == 1.0)


def _all_finite(t: torch.Tensor) -> bool:
    """Whether ``t`` is finite on every rank."""
    return _on_every_rank(bool(torch.isfinite(t).all()))


def _first_error(message: str) -> str:
    """The first rank's ``message`` that is not empty, on every rank ("" when none is): all
    ranks stop together, and rank 0, which logs, learns what another rank met."""
    if _on_every_rank(not message):
        return ""
    messages: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(messages, message)
    return str(next(m for m in messages if m))


def _weights_flag(module: torch.nn.Module) -> torch.Tensor:
    """0-d tensor: 1 if every parameter is finite, else NaN (for :func:`_all_finite`)."""
    ok = all(bool(torch.isfinite(p.detach()).all()) for p in module.parameters())
    return torch.tensor(1.0 if ok else float("nan"))


def _average_grads(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce the auxiliary gradients: DeepSpeed manages only the network's."""
    for p in params:
        if p.grad is not None:
            grad = p.grad.detach().cpu() if p.grad.device.type != "cpu" and _gloo() else p.grad
            dist.all_reduce(grad)
            grad /= world
            if grad is not p.grad:
                p.grad.copy_(grad)


def _gloo() -> bool:
    return dist.get_backend() == "gloo"


def _nccl() -> bool:
    return dist.get_backend() == "nccl"


def _save_checkpoint(
    engine: Any, folder: str, latest: bool, *, tag: str, client_state: dict[str, Any]
) -> None:
    engine.save_checkpoint(folder, tag=tag, client_state=client_state, save_latest=latest)


def _snapshot(model: torch.nn.Module, folder: str, step: int, lmbda: float, run_id: Any) -> None:
    """A codec checkpoint of the current weights (float32 copy, tables built from them)."""
    import copy
    from pathlib import Path

    from ltchm.codec import save_checkpoint

    snapshot = copy.deepcopy(model).float().cpu().eval()
    path = Path(folder) / f"step_{step:08d}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(snapshot, path, lmbda=lmbda, metadata={"run_id": run_id or "", "step": step})


def train_loop_per_worker(loop: dict[str, Any]) -> None:
    """The Ray Train entry point."""
    from jobs.training.session import RaySession

    train_loop(loop, RaySession())


def train_loop(loop: dict[str, Any], session: Session) -> dict[str, Any]:
    """Train one rate point on this rank; return its final status (step; nan_at_step or
    data_error when the workers stopped the run).

    ``loop``: {"config": dumped Config, "shards": path, "tracking_uri", "run_id",
    "ds_config": dict, "use_gpu": bool, "validate": bool, "threads": torch threads (CPU),
    "snapshot_dir": folder for codec snapshots, "t_launch": when the command started
    (epoch seconds; logged as the time to the first step)}.
    """
    from jobs.training.dsops import use_extensions_dir

    use_extensions_dir()  # before DeepSpeed builds its CPU op: once per environment
    import deepspeed

    cfg = config_from_dict(loop["config"])
    rank, world = session.rank, session.world
    use_gpu = loop["use_gpu"]
    device = torch.device("cuda", session.local_rank) if use_gpu else torch.device("cpu")
    if use_gpu:
        torch.cuda.set_device(device)
    else:
        from ltchm.runtime import tune_allocator

        tune_allocator()  # Ray's worker processes do not go through the ltchm CLI
        if loop.get("threads"):
            # Ray sets OMP_NUM_THREADS from the worker's CPUs, but say it explicitly: torch's
            # intra-op pool decides the step time on CPUs
            torch.set_num_threads(int(loop["threads"]))
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    model = model_from_config(cfg.model)
    if cfg.train.init_from:
        from ltchm.codec import load_model

        start = load_model(cfg.train.init_from)
        model.load_state_dict(start.state_dict())  # strict: the same architecture
        model.train()
    if cfg.train.compile:
        from ltchm.runtime import compile_for_training

        compiled = compile_for_training(model, device)
        if rank == 0:
            print(f"train.compile: {len(compiled)} modules compile at the first step", flush=True)
    net_params, aux_params = split_parameters(model)
    engine, optimizer, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=net_params,
        config=loop["ds_config"],
        dist_init_required=False,  # Ray Train or the launcher set up torch.distributed
    )
    if engine.torch_autocast_enabled():  # bf16: convolutions in bf16, these in float32
        keep_in_float32(engine.module)
    aux_optimizer = torch.optim.Adam(aux_params, lr=cfg.train.aux_lr)
    criterion = RateDistortionLoss(cfg.loss.lmbda, cfg.loss.metric)

    step, resumed_from, logged_until = 0, None, 0
    with session.resume_dir() as d:
        if d is not None:
            _, client = engine.load_checkpoint(d, load_module_strict=True)
            step = resumed_from = int(client["step"])
            aux_optimizer.load_state_dict(client["aux_optimizer"])

    nodes: list[Any] = [None] * world
    dist.all_gather_object(nodes, session.node)
    logger: Any = None
    if rank == 0 and not loop.get("run_id") and loop.get("metrics_file"):
        logger = JsonlLogger(loop["metrics_file"])
    if rank == 0 and loop.get("run_id"):
        from jobs.training.tracking import MetricLogger

        logger = MetricLogger(loop["tracking_uri"], loop["run_id"])
        logger.client.set_tag(loop["run_id"], "ltchm.rank_nodes", json.dumps(nodes))
        # A restarted worker group redoes the steps after its checkpoint (or all of them when
        # killed before the first one): those steps are already in the run, never log twice.
        history = logger.client.get_metric_history(loop["run_id"], "loss")
        logged_until = max((m.step for m in history), default=0)
        if resumed_from is not None:
            logger.client.set_tag(loop["run_id"], f"resumed_from_step.{time.time():.0f}",
                                  str(resumed_from))  # fmt: skip
    monitor = None
    if logger is not None and loop.get("run_id") and cfg.tracking.system_metrics:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            loop["run_id"], sampling_interval=10, tracking_uri=loop["tracking_uri"]
        )
        monitor.start()

    micro = loop["ds_config"]["train_micro_batch_size_per_gpu"]
    # A resumed run reseeds the stream so it does not replay the samples already seen.
    loader = make_train_loader(
        loop["shards"],
        batch_size=micro,
        patch_size=cfg.train.patch_size,
        shuffle_buffer=cfg.data.shuffle_buffer,
        epoch_length=cfg.data.epoch_length,
        num_workers=cfg.train.loader_workers,
        seed=cfg.train.seed + step,
    )
    val_images: list[torch.Tensor] = []
    if rank == 0 and loop.get("validate", True):
        try:
            val_images = [
                x for x, _ in iter_images(loop["shards"], "val", limit=cfg.train.val_images)
            ]
        except FileNotFoundError:
            val_images = []

    status: dict[str, Any] = {"step": step, "resumed_from": resumed_from}
    snapshots = loop.get("snapshot_dir") if rank == 0 else None
    batches = iter(loader)
    t_last, step_last = time.perf_counter(), step
    while step < cfg.train.steps:
        corrupt = ""
        try:
            try:
                x = next(batches)
            except StopIteration:  # an epoch of the resampled stream is over
                batches = iter(loader)
                x = next(batches)
        except CorruptShardError as exc:
            # The same bytes fail again after a restart: stop the run here rather than raise
            # into Ray Train's retries (max_failures worker-group restarts for nothing).
            corrupt = shard_message(exc)
        except ShardError as exc:  # I/O: a restart may read it; one line, not a traceback
            raise ShardError(shard_message(exc)) from None
        corrupt = _first_error(corrupt)
        if corrupt:
            status.update(data_error=corrupt)
            break
        x = x.to(device, non_blocking=True)
        lr = learning_rate(cfg.train, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        out = criterion(engine(x), x)
        if not _all_finite(out["loss"].detach()):
            status.update(nan_at_step=step + 1, non_finite="loss")
            break
        engine.backward(out["loss"])
        engine.step()
        aux_loss = engine.module.aux_loss()
        aux_optimizer.zero_grad(set_to_none=True)
        aux_loss.backward()
        _average_grads(aux_params, world)
        aux_optimizer.step()
        # ZeRO stage 0 clips every module parameter that holds a gradient: the quantiles' own
        # must not linger into the next step's norm
        aux_optimizer.zero_grad(set_to_none=True)
        step += 1
        metrics = {k: v.detach().item() for k, v in out.items()}
        metrics |= {"aux_loss": aux_loss.detach().item(), "lr": lr}
        fresh = step > logged_until
        if logger is not None and fresh and (step % cfg.train.log_every == 0 or step == 1):
            now = time.perf_counter()
            metrics["seconds_per_step"] = (now - t_last) / (step - step_last)
            t_last, step_last = now, step
            metrics["step"] = step  # the driver's progress line reads the latest values
            if step == 1 and loop.get("t_launch"):
                metrics["time_to_first_step_s"] = time.time() - float(loop["t_launch"])
            logger.log(metrics, step)
        validating = step % cfg.train.val_every == 0 or step == cfg.train.steps
        checkpointing = step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps
        every = cfg.train.snapshot_every
        snapshotting = every is not None and (step % every == 0 or step == cfg.train.steps)
        # A loss can stay finite while weights overflow (bounded likelihoods, clamped
        # outputs): never validate or checkpoint non-finite weights.
        if (validating or checkpointing or snapshotting) and not _all_finite(
            _weights_flag(engine.module)
        ):
            status.update(nan_at_step=step, non_finite="weights")
            break
        if snapshots and snapshotting:
            _snapshot(engine.module, snapshots, step, cfg.loss.lmbda, loop.get("run_id"))
        if logger and val_images and validating and fresh:
            from jobs.training.validation import validate

            logger.log(validate(engine.module, val_images), step)
        if checkpointing:
            if logger is not None:
                logger.flush()  # what a checkpoint covers is logged: a resume will not redo it
            client_state = {"step": step, "aux_optimizer": aux_optimizer.state_dict()}
            status["step"] = step
            session.save(
                functools.partial(
                    _save_checkpoint, engine, tag=f"step{step:08d}", client_state=client_state
                ),
                {**status, **{k: metrics[k] for k in ("loss", "bpp", "mse")}},
            )
    if logger is not None:
        logger.flush()
    if monitor is not None:
        monitor.finish()
    if "nan_at_step" in status or "data_error" in status:
        # the last good checkpoint stays the latest one
        if logger is not None and loop.get("run_id"):
            logger.client.set_tag(loop["run_id"], STOPPED_TAG, json.dumps(status))
        session.report(status)
    return status
