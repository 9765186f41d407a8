"""Atomic file output: write to a temporary name beside the target, then rename.

A crash or an exception leaves either the old file or the new one, never half of it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output",
    "check_output_dir",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` on success.

    ``suffix`` defaults to the target's, so writers that pick a format by extension work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.",
        suffix=(target.suffix if suffix is None else suffix) + ".tmp",
        dir=target.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # Some writers refuse to overwrite; give them a fresh name that is still ours.
    tmp_path.unlink()
    tmp_path = tmp_path.with_name(tmp_path.name[: -len(".tmp")])
    try:
        yield tmp_path
        if tmp_path.exists():
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, target)
        else:
            raise FileNotFoundError(f"nothing was written to the temporary file for {target}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def check_output(
    out: str | os.PathLike[str],
    *inputs: str | os.PathLike[str],
    suffixes: tuple[str, ...] | None = None,
    overwrite: bool = False,
) -> None:
    """Refuse, before any work, an output that would replace one of the command's inputs, is
    a folder, has a suffix other than ``suffixes``, or exists (unless ``overwrite``):
    ``ValueError`` naming it."""
    target = Path(out)
    if target.is_dir():
        raise ValueError(f"{target} is a folder; name the file to write")
    for src in inputs:
        same = (
            os.path.samefile(src, target)
            if target.exists() and Path(src).exists()
            else Path(src).resolve() == target.resolve()
        )
        if same:
            raise ValueError(f"{target} is the input file; writing it would destroy the input")
    if target.exists() and not overwrite:
        raise ValueError(f"{target} exists; pass --overwrite to replace it")
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise ValueError(
            f"{target}: unsupported output format {target.suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(suffixes)}"
        )


def check_output_dir(
    out: str | os.PathLike[str],
    *inputs: str | os.PathLike[str],
    flag: str = "--out",
    clears: bool = False,
) -> None:
    """Refuse, before any work, an output folder that is an existing file, is one of the
    command's ``inputs`` or lies inside an input folder (its files would be read back as
    input), or, for a command that ``clears`` what it does not recognise in its output
    folder, one that holds an input: ``ValueError`` naming both."""
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{flag} {out} is a file; name a folder")
    resolved = target.resolve()
    for src in inputs:
        if "://" in str(src):  # object storage: never the local output folder
            continue
        path = Path(src).resolve()
        if resolved == path or (path.is_dir() and resolved.is_relative_to(path)):
            raise ValueError(
                f"{flag} {out} is inside the input folder {src}: its files would be read "
                "as input; write outside it"
            )
        if clears and path.is_relative_to(resolved):
            raise ValueError(
                f"{flag} {out} holds the input {src}; write the output to another folder"
            )
