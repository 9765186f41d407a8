"""Reading a source scene with rasterio: its description, its tiles, its statistics.

Everything is read through windows, a few tiles at a time; nothing holds a whole scene.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from pipeline.scenes.bands import BandRange, default_groups, validate_groups

__all__ = [
    "SUPPORTED_DTYPES",
    "SceneError",
    "SourceTile",
    "describe_scene",
    "gdal_cache",
    "gdal_nodata",
    "open_scene",
    "read_tile",
    "scan_ranges",
    "stat_windows",
]

SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
# Statistics are gathered over windows of about this many pixels (all bands at once).
STAT_PIXELS = 1 << 20
_SKIP_BAND_TAGS = ("STATISTICS_",)  # describe the source's pixels, not the decoded ones


class SceneError(ValueError):
    """A source that cannot be coded as a scene; the message says why."""


@dataclass
class SourceTile:
    """The pixels of one tile window, ready to code.

    ``data``: (coded bands, h, w) native values; ``valid``: the same shape, bool;
    ``planes``: (mask planes, h, w) bool to store losslessly; ``alpha``: (h, w) or None.
    """

    data: np.ndarray
    valid: np.ndarray
    planes: np.ndarray
    alpha: np.ndarray | None


def gdal_cache(width: int, bands: int, dtype: str, block: int = 512) -> rasterio.Env:
    """A rasterio environment whose GDAL block cache holds about three block rows of a scene.

    GDAL's default cache is 5 % of the machine's memory per process and fills with every
    block read or written: a worker's memory would grow with the scene up to that. Three
    rows of 512-pixel blocks (at least 64 MiB, at most 1 GiB) are what tile reads with
    overlap and the mosaic's writes revisit.
    """
    row = width * block * bands * np.dtype(dtype).itemsize
    return rasterio.Env(GDAL_CACHEMAX=int(min(1024, max(64, 3 * row / 2**20))))


def open_scene(path: str) -> rasterio.DatasetReader:
    """Open ``path`` (a file or a GDAL ``/vsizip/``, ``/vsitar/`` path) with a clear error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise SceneError(f"{path}: not a readable raster ({exc})") from None


def gdal_nodata(ds: rasterio.DatasetReader) -> list[float | None]:
    """Each band's nodata value exactly as GDAL stores it.

    rasterio reports a nodata value outside the band's type (the -10000 of some drone
    orthophotos' 8-bit bands) as None; GDAL keeps it and ``gdalinfo`` shows it, so a faithful
    copy must too. rasterio exposes no raw accessor, so the value is read from the VRT
    description GDAL writes of the dataset (XML, no pixels copied).
    """
    vals = list(ds.nodatavals)
    if all(v is not None for v in vals):
        return vals
    with tempfile.TemporaryDirectory() as tmp:
        vrt = Path(tmp) / "scene.vrt"
        rasterio.shutil.copy(ds, vrt, driver="VRT")
        root = ET.parse(vrt).getroot()
    for band in root.iter("VRTRasterBand"):
        node = band.find("NoDataValue")
        i = int(band.get("band", "0")) - 1
        if node is not None and node.text and 0 <= i < len(vals) and vals[i] is None:
            vals[i] = float(node.text)
    return vals


def _json_nodata(v: float | None) -> float | str | None:
    if v is None:
        return None
    return "nan" if math.isnan(v) else float(v)


def _mask_mode(ds: rasterio.DatasetReader, alpha: int | None) -> tuple[str, list[int]]:
    """("none" | "nodata" | "dataset" | "alpha", bands with their own nodata plane)."""
    flags = ds.mask_flag_enums
    if alpha is not None:
        return "alpha", []
    if ds.dtypes[0].startswith("float"):
        # NaN and inf are missing data in any float raster, declared or not
        return "nodata", list(range(1, ds.count + 1))
    if any(MaskFlags.per_dataset in f for f in flags):
        return "dataset", []
    nodata_bands = [i + 1 for i, f in enumerate(flags) if MaskFlags.nodata in f]
    if nodata_bands:
        return "nodata", nodata_bands
    return "none", []


def describe_scene(
    ds: rasterio.DatasetReader, groups: Sequence[Sequence[int]] | None = None
) -> dict[str, Any]:
    """The header fields that come from the source (geometry, bands, masks, metadata)."""
    dtypes = set(ds.dtypes)
    if len(dtypes) != 1:
        raise SceneError(f"bands of different data types ({', '.join(sorted(dtypes))})")
    dtype = ds.dtypes[0]
    if dtype not in SUPPORTED_DTYPES:
        raise SceneError(f"data type {dtype} is not supported ({', '.join(SUPPORTED_DTYPES)})")
    colorinterp = [c.name for c in ds.colorinterp]
    auto_groups, alpha = default_groups(colorinterp)
    if groups is None:
        groups = auto_groups
    groups = [list(g) for g in groups]
    try:
        validate_groups(groups, ds.count, alpha)
    except ValueError as exc:
        raise SceneError(str(exc)) from None
    mode, mask_bands = _mask_mode(ds, alpha)
    gcps, gcp_crs = ds.gcps
    crs = ds.crs or gcp_crs
    if ds.transform.is_identity and gcps:
        gcp_list = [[g.row, g.col, g.x, g.y, g.z or 0.0] for g in gcps]
    else:
        gcp_list = None
    return {
        "width": ds.width,
        "height": ds.height,
        "count": ds.count,
        "dtype": dtype,
        "crs_wkt": crs.to_wkt() if crs else None,
        "transform": list(ds.transform)[:6],
        "gcps": gcp_list,
        "nodata": [_json_nodata(v) for v in gdal_nodata(ds)],
        "colorinterp": colorinterp,
        "descriptions": list(ds.descriptions),
        "units": list(ds.units),
        "scales": [float(s) for s in ds.scales],
        "offsets": [float(o) for o in ds.offsets],
        "tags": dict(ds.tags()),
        "band_tags": [
            {k: v for k, v in ds.tags(b).items() if not k.startswith(_SKIP_BAND_TAGS)}
            for b in range(1, ds.count + 1)
        ],
        "groups": groups,
        "alpha_band": alpha,
        "mask": {"mode": mode, "bands": mask_bands},
    }


def coded_bands(groups: Sequence[Sequence[int]]) -> list[int]:
    return sorted({b for g in groups for b in g})


def read_tile(ds: rasterio.DatasetReader, window: Window, header: Any) -> SourceTile:
    """Read one window of the source: coded bands, their validity, the lossless planes."""
    bands = coded_bands(header.groups)
    data = ds.read(bands, window=window)
    h, w = data.shape[1:]
    valid = np.ones(data.shape, dtype=bool)
    planes = np.zeros((header.mask.planes, h, w), dtype=bool)
    alpha = None
    mode = header.mask.mode
    if mode == "nodata":
        planes[:] = ds.read_masks(list(header.mask.bands), window=window) > 0
        for p, b in enumerate(header.mask.bands):
            if b in bands:
                valid[bands.index(b)] &= planes[p]
    elif mode == "dataset":
        planes[0] = ds.dataset_mask(window=window) > 0
        valid &= planes[0]
    elif mode == "alpha":
        alpha = ds.read(header.alpha_band, window=window)
        valid &= alpha > 0
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        valid &= finite
        if mode == "nodata":
            for p, b in enumerate(header.mask.bands):
                if b in bands:
                    planes[p] &= finite[bands.index(b)]
    return SourceTile(data, valid, planes, alpha)


def stat_windows(ds: rasterio.DatasetReader, pixels: int = STAT_PIXELS) -> Iterator[Window]:
    """Windows of about ``pixels`` pixels covering the scene, aligned to its blocks.

    Aligned windows decode each compressed block once: a striped file is read in whole
    strips, a tiled one in groups of whole tiles.
    """
    bh, bw = ds.block_shapes[0]
    bw = min(bw, ds.width)
    bh = min(bh, ds.height)
    cw = min(ds.width, max(bw, (int(math.sqrt(pixels)) // bw) * bw))
    ch = min(ds.height, max(bh, (pixels // cw) // bh * bh))
    for row in range(0, ds.height, ch):
        for col in range(0, ds.width, cw):
            yield Window(col, row, min(cw, ds.width - col), min(ch, ds.height - row))


def scan_ranges(ds: rasterio.DatasetReader, header: Any) -> tuple[list[float], list[float]]:
    """Valid minimum and maximum of each coded band over the whole scene (streamed)."""
    rng = BandRange(len(coded_bands(header.groups)))
    for window in stat_windows(ds):
        tile = read_tile(ds, window, header)
        rng.update(tile.data, tile.valid)
    return rng.result()


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
