"""Real Ray nodes and servers as separate processes for the tests: ports, waiting, stopping.

Processes start in their own session and are stopped by signalling that process group, never
with ``ray stop`` (which stops every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "VENV_BIN",
    "free_port",
    "ray_nodes",
    "run_capped",
    "s3_server",
    "stop",
    "wait_for",
]

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    condition: Callable[[], bool],
    proc: subprocess.Popen,
    what: str,
    timeout: float = 180,
    interval: float = 0.2,
) -> None:
    """Poll ``condition`` until it holds; fail if ``proc`` ends or ``timeout`` passes first."""
    t0 = time.monotonic()
    while not condition():
        assert proc.poll() is None, f"{what}: the process ended (exit {proc.returncode})"
        assert time.monotonic() - t0 < timeout, f"{what}: timed out"
        time.sleep(interval)


def stop(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def ray_nodes(logs: Path, cpus: Sequence[int]) -> Iterator[tuple[str, dict[str, str]]]:
    """``ray start --head`` (``cpus[0]`` CPUs) and a node per further entry, on free ports,
    with their own temp dir and auth token; yields (dashboard URL, env for ``ray job submit``).
    """
    temp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # Unix socket paths <= 107 bytes
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": uuid.uuid4().hex,
    }
    env.pop("RAY_ADDRESS", None)
    gcs, dashboard = free_port(), free_port()
    ray = str(VENV_BIN / "ray")
    procs: list[subprocess.Popen] = []
    try:
        for i, n in enumerate(cpus):
            if i == 0:
                role = [
                    "--head", "--port", str(gcs), "--dashboard-port", str(dashboard),
                    "--dashboard-host", "127.0.0.1", "--include-dashboard", "true",
                    "--ray-client-server-port", str(free_port()),
                ]  # fmt: skip
            else:
                role = ["--address", f"127.0.0.1:{gcs}"]
            log = logs / ("head.log" if i == 0 else f"node{i}.log")
            proc = subprocess.Popen(
                [
                    ray, "start", *role, "--block", "--num-cpus", str(n),
                    "--dashboard-agent-listen-port", str(free_port()),
                    "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp),
                    "--disable-usage-stats",
                ],
                env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            procs.append(proc)
            wait_for(lambda log=log: "block forever" in log.read_text(), proc, log.stem)
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        # `ray start --block` shuts down gracefully for over 10 s on SIGTERM (its runtime-env
        # agent waits out a timeout); the jobs are done and the temp dir goes anyway
        for proc in reversed(procs):
            stop(proc, grace=2)
        shutil.rmtree(temp, ignore_errors=True)


@contextlib.contextmanager
def s3_server(logs: Path) -> Iterator[str]:
    """An S3-compatible server (moto's standalone server: the S3 REST API over HTTP) on a free
    loopback port; yields its endpoint URL. Clients reach it over the network like any S3."""
    import urllib.request

    port = free_port()
    log = logs / "s3.log"
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return True
        except OSError:
            return False

    try:
        wait_for(up, proc, "S3 server", timeout=60)
        yield endpoint
    finally:
        stop(proc)


_CAP = """
import resource as _resource, sys as _sys

def cap_memory():
    # the address space the child has now (torch, the model loaded) plus argv[1] bytes:
    # an allocation beyond fails as a MemoryError instead of taking the machine
    vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    cap = vm + int(_sys.argv[1])
    _resource.setrlimit(_resource.RLIMIT_AS, (cap, cap))
"""


def run_capped(child: str, extra_bytes: int, *args: str, timeout: float = 900) -> Any:
    """Run Python ``child`` in a fresh interpreter (``sys.argv[1]`` is ``extra_bytes``, then
    ``args``) with ``cap_memory()`` defined for it to call once set up; return the JSON of its
    last output line."""
    import json

    from ltchm.paths import REPO_ROOT

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _CAP + child, str(extra_bytes), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])
