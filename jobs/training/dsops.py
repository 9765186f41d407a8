"""DeepSpeed's JIT-compiled CPU op, built once per Python environment.

``deepspeed.init_distributed`` builds its shared-memory communication op
(``deepspeed_shm_comm``) with PyTorch's JIT extension loader on every CPU machine. That
loader keeps one build folder per op under ``~/.cache/torch_extensions`` and writes the
absolute paths of the DeepSpeed sources and of torch into its ``build.ninja``; a run from
another environment (a fresh clone's ``.venv``, CI, a second checkout) rewrites that file,
and ninja rebuilds the op (~40 s idle, ~100 s on a loaded 2-core machine), then the first
environment rebuilds it again. The fix: one extensions folder per environment, filled once
at install (``scripts/bootstrap.sh`` runs ``python -m jobs.training.dsops``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

__all__ = ["build_ops", "extensions_dir", "main", "use_extensions_dir"]

ENV = "TORCH_EXTENSIONS_DIR"


def extensions_dir() -> Path:
    """This environment's extensions folder: keyed by its prefix and torch/DeepSpeed versions."""
    from importlib.metadata import PackageNotFoundError, version

    def _version(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "none"

    key = f"{sys.prefix}|{sys.version}|{_version('torch')}|{_version('deepspeed')}"
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ltchm" / "torch_extensions" / tag


def use_extensions_dir() -> Path:
    """Point PyTorch's extension builds at this environment's folder (unless the user set
    ``TORCH_EXTENSIONS_DIR``); call before DeepSpeed initialises. Child processes inherit it."""
    if not os.environ.get(ENV):
        os.environ[ENV] = str(extensions_dir())
    return Path(os.environ[ENV])


def build_ops() -> float:
    """Build (or find) the op ``deepspeed.init_distributed`` loads; the seconds it took."""
    use_extensions_dir()
    t0 = time.perf_counter()
    from deepspeed.comm.torch import build_shm_op

    build_shm_op()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    seconds = build_ops()
    print(f"DeepSpeed ops ready in {os.environ[ENV]} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
