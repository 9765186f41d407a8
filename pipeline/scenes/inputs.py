"""The scenes of a batch: raster members of files, folders and zip/tar archives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.archives import RASTER_SUFFIXES, ArchiveError, Member, list_source

__all__ = ["Scene", "list_scenes"]


@dataclass(frozen=True)
class Scene:
    """One source raster: the member it is, its report name, its output path."""

    key: str  # e.g. "archive.zip/folder/a.tif"
    member: Member
    out: str  # relative to the output folder

    @property
    def gdal_path(self) -> str:
        """Where GDAL reads it (``/vsizip/``, ``/vsitar/`` or a plain path)."""
        return self.member.gdal_path


def list_scenes(inputs: Sequence[str | Path]) -> tuple[list[Scene], list[tuple[str, str]]]:
    """The raster members of the inputs, and (name, reason) for what cannot be used."""
    scenes: list[Scene] = []
    bad: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for source in inputs:
        try:
            listing = list_source(source)
        except ArchiveError as exc:
            bad.append((str(source), str(exc)))
            continue
        root = listing.path.name
        for name, reason in listing.refused:
            bad.append((f"{root}/{name}", reason))
        for note in listing.notes:
            bad.append((root, note))
        for m in listing.members:
            if m.suffix not in RASTER_SUFFIXES:
                continue
            key = root if listing.kind == "file" else f"{root}/{m.path}"
            out = str(PurePosixPath(key).with_suffix(".ltcs"))
            if out in seen:
                bad.append((key, f"output name {out} is already taken by {seen[out]}"))
                continue
            seen[out] = key
            scenes.append(Scene(key, m, out))
    return scenes, bad
