"""Writing decoded scenes as GeoTIFF or Cloud-Optimized GeoTIFF, atomically.

Blocks arrive in the mosaic's order, not in the file's, so they are first written into an
uncompressed tiled GeoTIFF beside the target (in-place block updates; a compressed file
would re-compress and append a block each time it is touched). GDAL then copies that into
the final file: the COG driver (tiled, overviews, ZSTD/DEFLATE with a predictor) or a tiled
GTiff with overviews. Both steps stream; the temporary files are removed in every case.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window
from tqdm.auto import tqdm

from ltchm.atomic import atomic_path
from pipeline.scenes.container import SceneHeader
from pipeline.scenes.mosaic import Block, nodata_of
from pipeline.scenes.source import gdal_cache

__all__ = ["BLOCK", "write_raster"]

BLOCK = 512


def _profile(header: SceneHeader, window: Window) -> dict[str, Any]:
    transform = Affine(*header.transform)
    if window.col_off or window.row_off:
        transform = transform @ Affine.translation(window.col_off, window.row_off)
    w, h = int(window.width), int(window.height)
    block = BLOCK if max(w, h) > BLOCK else 256
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": header.count,
        "dtype": header.dtype,
        "crs": CRS.from_wkt(header.crs_wkt) if header.crs_wkt and not header.gcps else None,
        "transform": transform,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "interleave": "pixel",
        "BIGTIFF": "IF_SAFER",
    }
    rgb = [c.lower() for c in header.colorinterp[:3]] == ["red", "green", "blue"]
    if rgb and header.dtype == "uint8":
        profile["photometric"] = "RGB"
    if header.alpha_band is not None:
        profile["ALPHA"] = "YES"
    return profile


def _describe(dst: rasterio.io.DatasetWriter, header: SceneHeader) -> None:
    """Bands' nodata, colour interpretation, names, units, scales, tags, GCPs."""
    nodata = [nodata_of(header, b) for b in range(1, header.count + 1)]
    if any(v is not None for v in nodata):
        # rasterio's public setter refuses values outside the band type (-10000 on uint8),
        # which GDAL stores and sources carry; the per-band setter writes them as they are.
        dst._set_nodatavals(nodata)
    dst.colorinterp = [ColorInterp[c] for c in header.colorinterp]
    if header.tags:
        dst.update_tags(**header.tags)
    for b in range(1, header.count + 1):
        if header.descriptions[b - 1]:
            dst.set_band_description(b, header.descriptions[b - 1])
        if header.units[b - 1]:
            dst.set_band_unit(b, header.units[b - 1])
        if header.band_tags[b - 1]:
            dst.update_tags(b, **header.band_tags[b - 1])
    if any(s != 1.0 for s in header.scales) or any(o != 0.0 for o in header.offsets):
        dst.scales = header.scales
        dst.offsets = header.offsets
    if header.gcps:
        gcps = [GroundControlPoint(row=r, col=c, x=x, y=y, z=z) for r, c, x, y, z in header.gcps]
        dst.gcps = (gcps, CRS.from_wkt(header.crs_wkt) if header.crs_wkt else None)


def _overview_factors(width: int, height: int, block: int) -> list[int]:
    """Powers of two down to about one block (GDAL's own rule for COGs)."""
    n = (
        max(0, math.ceil(math.log2(max(width, height) / block)))
        if max(width, height) > block
        else 0
    )
    return [2**i for i in range(1, n + 1)]


def write_raster(
    blocks: Iterable[Block],
    header: SceneHeader,
    window: Window,
    out: str | os.PathLike[str],
    fmt: Literal["cog", "gtiff"] = "cog",
    compress: Literal["zstd", "deflate"] = "zstd",
    resampling: str = "average",
    progress: bool = False,
) -> Path:
    """Write the ``blocks`` of ``window`` of a decoded scene to ``out`` atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    profile = _profile(header, window)
    c0, r0 = int(window.col_off), int(window.row_off)
    stage = out.with_name(f".{out.name}.{os.getpid()}.stage.tif")
    cache = (profile["width"], header.count, header.dtype)
    try:
        with gdal_cache(*cache), rasterio.open(stage, "w", **profile) as dst:
            _describe(dst, header)
            total = int(window.width) * int(window.height)
            with tqdm(
                total=total, unit="px", unit_scale=True, desc="decode", disable=not progress
            ) as bar:
                for b in blocks:
                    w = Window(
                        int(b.window.col_off) - c0,
                        int(b.window.row_off) - r0,
                        int(b.window.width),
                        int(b.window.height),
                    )
                    dst.write(b.data, window=w)
                    if b.mask is not None:
                        dst.write_mask(np.where(b.mask, 255, 0).astype(np.uint8), window=w)
                    bar.update(int(w.width) * int(w.height))
            factors = _overview_factors(dst.width, dst.height, profile["blockxsize"])
            if fmt == "gtiff" and factors:
                dst.build_overviews(factors, Resampling[resampling])
                dst.update_tags(ns="rio_overview", resampling=resampling)
        float_data = np.dtype(header.dtype).kind == "f"
        options: dict[str, Any] = {"COMPRESS": compress.upper(), "BIGTIFF": "IF_SAFER"}
        if fmt == "cog":
            options.update(
                driver="COG",
                BLOCKSIZE=profile["blockxsize"],
                PREDICTOR="YES",
                OVERVIEWS="AUTO",
                RESAMPLING=resampling.upper(),
            )
        else:
            options.update(
                driver="GTiff",
                TILED="YES",
                BLOCKXSIZE=profile["blockxsize"],
                BLOCKYSIZE=profile["blockysize"],
                PREDICTOR=3 if float_data else 2,
                COPY_SRC_OVERVIEWS="YES",
                INTERLEAVE="PIXEL",
            )
            if "photometric" in profile:
                options["PHOTOMETRIC"] = profile["photometric"]
            if "ALPHA" in profile:
                options["ALPHA"] = "YES"
        with gdal_cache(*cache), atomic_path(out) as tmp:
            rasterio.shutil.copy(stage, tmp, **options)
    finally:
        for p in (
            stage,
            stage.with_name(stage.name + ".msk"),
            stage.with_name(stage.name + ".ovr"),
        ):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return out
