"""Where a training worker runs: under Ray Train, or under DeepSpeed's own launcher.

The worker loop (:mod:`jobs.training.worker`) is the same in both; a session gives it its
rank, the checkpoint to resume from, and a place to save checkpoints and report progress.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

__all__ = ["LauncherSession", "RaySession", "Session"]

# writes a DeepSpeed checkpoint into a folder: save_fn(folder, save_latest)
SaveFn = Callable[[str, bool], None]


class Session(Protocol):
    rank: int
    world: int
    local_rank: int
    node: str  # where this rank runs: a Ray node id, or a host name

    def resume_dir(self) -> Any:
        """A context manager yielding the folder of the checkpoint to resume from, or None."""

    def save(self, save_fn: SaveFn, metrics: dict[str, Any]) -> None:
        """Write a checkpoint with ``save_fn`` (on every rank) and report ``metrics``."""

    def report(self, metrics: dict[str, Any]) -> None:
        """Report ``metrics`` without a checkpoint (every rank)."""


class RaySession:
    """A Ray Train worker: checkpoints are uploaded to the run's storage by Ray Train, which
    restarts the worker group from the latest one after a failure."""

    def __init__(self) -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.local_rank = ctx.get_local_rank()
        self.node = ray.get_runtime_context().get_node_id()

    @contextmanager
    def resume_dir(self) -> Iterator[str | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as d:
            yield d

    def save(self, save_fn: SaveFn, metrics: dict[str, Any]) -> None:
        import ray.train
        from ray.train import Checkpoint

        # every rank writes its own part (ZeRO shards its optimizer state); Ray Train merges
        # the parts of one report into one checkpoint folder
        with tempfile.TemporaryDirectory() as d:
            save_fn(d, True)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))

    def report(self, metrics: dict[str, Any]) -> None:
        import ray.train

        ray.train.report(metrics)


class LauncherSession:
    """A rank started by ``deepspeed`` (or ``torchrun``): rank and world from the environment,
    checkpoints in ``ckpt_dir``, which must be on a filesystem all nodes share.

    A relaunch after a failure resumes from the checkpoint DeepSpeed's ``latest`` names.
    """

    def __init__(self, ckpt_dir: str | Path, keep: int = 2) -> None:
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.node = socket.gethostname()
        self.ckpt_dir = Path(ckpt_dir)
        self.keep = keep
        self.last_metrics: dict[str, Any] = {}

    @contextmanager
    def resume_dir(self) -> Iterator[str | None]:
        yield str(self.ckpt_dir) if (self.ckpt_dir / "latest").is_file() else None

    def save(self, save_fn: SaveFn, metrics: dict[str, Any]) -> None:
        import torch.distributed as dist

        from ltchm.atomic import atomic_write_text

        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        tag = metrics.get("tag") or f"step{int(metrics['step']):08d}"
        # DeepSpeed's rank 0 writes ``latest`` while other ranks may still be writing their
        # optimizer shards; a kill then leaves ``latest`` naming a torn checkpoint. So
        # ``latest`` is written here, after DeepSpeed's closing barrier, atomically.
        save_fn(str(self.ckpt_dir), False)
        dist.barrier()
        self.last_metrics = dict(metrics)
        if self.rank == 0:
            atomic_write_text(self.ckpt_dir / "latest", tag)
            tags = sorted(p for p in self.ckpt_dir.iterdir() if p.is_dir())
            for old in tags[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)

    def report(self, metrics: dict[str, Any]) -> None:
        self.last_metrics.update(metrics)
