"""The Ray a job runs on: the cluster it joins, or a private local one."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

__all__ = ["init_ray", "ray_address", "ray_session"]

_API_SERVER_VAR = "RAY_API_SERVER_ADDRESS"


def ray_address(address: str | None) -> str | None:
    """The cluster to join: ``address``, else ``$RAY_ADDRESS``; None for a private Ray."""
    # read here: ray.init(address="local") would ignore it, and a bare ray.init() would join
    # any cluster found on this machine
    return address or os.environ.get("RAY_ADDRESS") or None


def init_ray(address: str | None, **kwargs: Any) -> None:
    """``ray.init``: join ``address`` (None: ``$RAY_ADDRESS``, set by ``ray job submit`` and
    KubeRay), or start a private local instance when there is none or it is ``"local"``.

    A private instance's processes are told where its own State API is. Without that, a
    process inside it that asks the State API with no address (Ray Train's placement-group
    cleaner does, every second while a run lasts, about the run's controller) asks "the
    latest cluster" of Ray's ``ray_current_cluster`` file: the last ``ray start`` on this
    machine, another cluster, or one long stopped and not ``ray stop``-ped. On a stopped one
    the cleaner blocks, and each training run waited 12 s at its end for it to stop.
    Other ``kwargs`` go to ``ray.init`` (``include_dashboard=False``: no State API at all).
    """
    import ray

    address = ray_address(address)
    if address not in (None, "local"):
        ray.init(address=address, **kwargs)
        return
    host = "127.0.0.1"
    with socket.socket() as s:  # a free port for the dashboard, which serves the State API
        s.bind((host, 0))
        port = s.getsockname()[1]
    if kwargs.get("include_dashboard") is not False:
        kwargs |= {"dashboard_host": host, "dashboard_port": port}
    # The processes ray.init starts inherit the variable (and the workers theirs); the
    # caller's own environment is left as it was: `ray job submit` honours the variable
    # before its --address.
    before = os.environ.get(_API_SERVER_VAR)
    os.environ[_API_SERVER_VAR] = f"http://{host}:{port}"
    try:
        ray.init(address="local", **kwargs)
    finally:
        if before is None:
            os.environ.pop(_API_SERVER_VAR, None)
        else:
            os.environ[_API_SERVER_VAR] = before


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray for the block: the one already initialised, ``address``, ``$RAY_ADDRESS``, or a
    local instance started (and shut down) here."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = ray_address(address)
    # Ray's notices (token authentication, "Started a local Ray instance") are not the
    # user's business; errors still show
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR}
    if address is None:  # the private Ray of one job needs no dashboard
        kwargs["include_dashboard"] = False
    init_ray(address, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()
