"""The Ray a job runs on: the cluster it joins, or a private local one."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["ray_session"]


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
    # Ray's notices (token authentication, "Started a local Ray instance") are not the
    # user's business; errors still show
    kwargs: dict[str, Any] = {"address": address or "local", "logging_level": logging.ERROR}
    if address is None:
        kwargs["include_dashboard"] = False
    ray.init(**kwargs)
    try:
        yield
    finally:
        ray.shutdown()
