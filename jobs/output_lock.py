"""The output folder a job owns: one job writes into a folder at a time."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

__all__ = ["OutputDirError", "locked_output"]


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
