"""What the Ray jobs share about where they run: the Ray they join and the output they own."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["OutputDirError", "locked_output", "ray_session"]


class OutputDirError(RuntimeError):
    """The output folder holds another job's results, or another job is writing to it."""


@contextlib.contextmanager
def locked_output(out_dir: Path, state_dir: str, job: str) -> Iterator[None]:
    """Hold ``out_dir``'s lock (``out_dir/state_dir/lock``) for the block, or fail at once.

    An advisory ``flock``: released by the kernel when the holder dies, so a killed job never
    leaves a stale lock behind.
    """
    state = out_dir / state_dir
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputDirError(f"{out_dir}: another {job} job is writing here") from None
        yield


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray for the block: the one already initialised, ``address``, ``$RAY_ADDRESS``, or a
    local instance started (and shut down) here."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    # address="local": a bare ray.init() would join any cluster found on this machine.
    kwargs: dict[str, Any] = {"address": address or "local"}
    if address is None:
        kwargs["include_dashboard"] = False
    ray.init(**kwargs)
    try:
        yield
    finally:
        ray.shutdown()
