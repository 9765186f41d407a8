"""Encoding scenes: the plan (header) of a source, its tiles, and whole files in-process.

:func:`plan_scene` reads the source once (statistics for the bit-depth mapping) and fixes
everything the file's header holds; :func:`encode_tiles` codes any subset of tiles of a
planned scene (the Ray job's unit of work); :func:`encode_scene` does both in this process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rasterio.windows import Window

from ltchm.atomic import atomic_path
from ltchm.config import ScenesConfig
from pipeline.scenes.container import (
    ErrorInfo,
    MappingInfo,
    ModelInfo,
    SceneHeader,
    SceneWriter,
    SourceInfo,
    TilingInfo,
)
from pipeline.scenes.mosaic import grid_of
from pipeline.scenes.source import (
    describe_scene,
    file_sha256,
    gdal_cache,
    open_scene,
    read_tile,
    scan_ranges,
)
from pipeline.scenes.tiles import TileCoder, model_info

__all__ = ["encode_scene", "encode_tiles", "iter_tiles", "plan_scene"]


def plan_scene(
    path: str,
    cfg: ScenesConfig,
    model: Any,
    *,
    name: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    context: str | None = None,
    source: str | None = None,
    family: list[ModelInfo] | None = None,
) -> SceneHeader:
    """The header of ``path`` coded with ``cfg`` by a model of identity ``model``.

    Args:
        path: a file or GDAL path (``/vsizip/...``).
        model: a :class:`~ltchm.codec.ModelIdentity`.
        sha256, size: of the source's bytes, when the caller has them (archive members).
        context, source: the model's context mode and where it came from (recorded).
        family: the rate points tiles choose from (targets); the first is ``model``.
    """
    with open_scene(path) as ds:
        fields = describe_scene(ds, cfg.band_groups)
        mode = "identity" if fields["dtype"] == "uint8" else cfg.bit_mapping
        metadata = {
            "driver": ds.driver,
            "compress": ds.compression.name if ds.compression else None,
            "block": list(ds.block_shapes[0]),
            "mask_flags": [[f.name for f in flags] for flags in ds.mask_flag_enums],
        }
        if sha256 is None and os.path.isfile(path):
            sha256, size = file_sha256(path), os.path.getsize(path)
        header = SceneHeader(
            **fields,
            mapping=MappingInfo(mode="identity"),
            tiling=TilingInfo(tile_size=cfg.tile_size, overlap=cfg.overlap, blend=cfg.blend()),
            error=(
                ErrorInfo(max_error=cfg.max_error, psnr_floor=cfg.psnr_floor)
                if cfg.max_error is not None or cfg.psnr_floor is not None
                else None
            ),
            model=family[0] if family else model_info(model, context=context, source=source),
            family=family or [],
            source=SourceInfo(
                name=name or Path(path).name,
                sha256=sha256 or "",
                bytes=size or 0,
                driver=ds.driver,
                metadata=metadata,
            ),
        )
        if mode == "scene-linear":
            with gdal_cache(ds.width, ds.count, ds.dtypes[0]):
                lo, hi = scan_ranges(ds, header)
            header = header.model_copy(update={"mapping": MappingInfo(mode=mode, lo=lo, hi=hi)})
        elif mode == "tile-linear":
            header = header.model_copy(update={"mapping": MappingInfo(mode=mode)})
    return header


def iter_tiles(
    path: str, header: SceneHeader, indices: Iterable[int], coder: TileCoder | Any
) -> Iterator[bytes]:
    """The packed records of tiles ``indices`` of the planned scene at ``path``, one by one."""
    grid = grid_of(header)
    with gdal_cache(header.width, header.count, header.dtype), open_scene(path) as ds:
        if (ds.width, ds.height, ds.count) != (header.width, header.height, header.count):
            raise ValueError(f"{path}: the source changed since it was planned")
        for i in indices:
            src = read_tile(ds, Window(*grid.window(i)), header)
            yield coder.encode(header, grid, i, src)


def encode_tiles(
    path: str, header: SceneHeader, indices: Sequence[int], coder: TileCoder | Any
) -> list[bytes]:
    """The packed records of tiles ``indices`` (the Ray job's unit of work)."""
    return list(iter_tiles(path, header, indices, coder))


def encode_scene(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    coder: TileCoder | Any,
    cfg: ScenesConfig | None = None,
    progress: bool = False,
) -> SceneHeader:
    """Encode one scene into an ``.ltcs`` file in this process (atomically); ``coder`` a
    :class:`TileCoder` or a :class:`~pipeline.scenes.targets.FamilyCoder`."""
    from tqdm.auto import tqdm

    cfg = cfg or ScenesConfig()
    from pipeline.scenes.targets import FamilyCoder

    family = None
    if isinstance(coder, FamilyCoder):
        family = coder.infos(None, [None] * len(coder.coders))
    header = plan_scene(str(path), cfg, coder.identity, family=family)
    n = len(grid_of(header))
    with atomic_path(out) as tmp, SceneWriter(tmp, header, n) as writer:
        tiles = iter_tiles(str(path), header, range(n), coder)
        for record in tqdm(tiles, total=n, desc="encode", unit="tile", disable=not progress):
            writer.add(record)
        writer.close()
    return header
