"""DeepSpeed's CPU op is built once per environment, into that environment's own folder."""

from __future__ import annotations

import subprocess
import sys

from jobs.training import dsops


def test_one_folder_per_environment(monkeypatch) -> None:
    here = dsops.extensions_dir()
    assert here == dsops.extensions_dir()  # stable
    monkeypatch.setattr(sys, "prefix", "/somewhere/else/.venv")
    assert dsops.extensions_dir() != here


def test_a_folder_the_user_chose_is_kept(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert dsops.use_extensions_dir() == tmp_path
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    assert dsops.use_extensions_dir() == dsops.extensions_dir()


def test_the_op_is_found_where_every_run_looks(monkeypatch) -> None:
    # the install (scripts/bootstrap.sh) built it; a new process finds it there without a
    # build, whatever folder it starts in
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    code = (
        "import time, os; from jobs.training.dsops import build_ops, extensions_dir;"
        "s = build_ops(); print(s); print(os.environ['TORCH_EXTENSIONS_DIR'] == "
        "str(extensions_dir()))"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.split()[-1] == "True"
    (built,) = dsops.extensions_dir().rglob("deepspeed_shm_comm*.so")
    stamp = built.stat().st_mtime_ns
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert again.returncode == 0, again.stderr[-2000:]
    assert built.stat().st_mtime_ns == stamp  # loaded, not rebuilt
