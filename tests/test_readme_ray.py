"""The README's ``ray start`` / ``ray job submit`` steps, run verbatim (free ports, a temporary
output folder) in a fresh shell: token authentication as documented works."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import psutil

from ltchm.imageio import list_images
from ltchm.paths import REPO_ROOT, SAMPLES
from tests.processes import VENV_BIN, free_port

BEGIN, END = "<!-- ray-job-submit:begin -->", "<!-- ray-job-submit:end -->"


def readme_block() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    block = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    match = re.search(r"```bash\n(.*?)```", block, re.S)
    assert match, "the README's ray-job-submit block has no bash code"
    return match.group(1)


def _stop_cluster(gcs_port: int) -> None:
    """Stop the processes of this cluster only (``ray stop`` would stop every Ray here,
    the test session's own included): those that name its GCS port, and their children."""
    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if f":{gcs_port}" in cmd or f"gcs_server_port={gcs_port}" in cmd:
            mine.append(proc)
    family = {p.pid: p for p in mine}
    for p in mine:
        with contextlib.suppress(psutil.NoSuchProcess):
            family.update({c.pid: c for c in p.children(recursive=True)})
    for p in family.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    # Ray's runtime-env agent waits out a 10-s timeout on SIGTERM: the job is done by now
    _, alive = psutil.wait_procs(list(family.values()), timeout=2)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def test_the_readme_submit_steps_work_verbatim(tmp_path: Path) -> None:
    block = readme_block()
    for must in ("RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN=", "ray start --head", "ray job submit"):
        assert must in block
    gcs, dashboard, agent = free_port(), free_port(), free_port()
    out = tmp_path / "shards"
    script = (
        block.replace("6379", str(gcs))
        .replace("8265", str(dashboard))
        .replace("52365", str(agent))
        .replace("/tmp/ltchm-submitted-shards", str(out))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        _stop_cluster(gcs)
    log = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, log
    assert "succeeded" in log, log
    # every sample image (256 x 256: one tile each) landed in the shards
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["images"] == len(list_images(SAMPLES / "ucm")), manifest["counts"]
    assert sum(manifest["samples"].values()) >= manifest["images"]
    assert {p.name for p in out.glob("*.tar")} == {s["name"] for s in manifest["shards"]}
