"""The ``.ltcs`` container: one georeferenced scene as independently decodable tiles.

Layout (little-endian)::

    magic          8  b"\\x89LTS\\r\\n\\x1a\\n" (PNG-style: catches text-mode mangling)
    version        1  format version: 2 for files with an error-bounded layer or per-tile
                      models, else 1 (readable by releases before version 2)
    header length  4
    header            UTF-8 JSON (:class:`SceneHeader`): geometry, CRS, bands, masks, mapping,
                      tile grid, model identity, source
    header crc32   4
    tiles             one record per tile (:class:`TileRecord`), in raster order
    index             per tile: offset u64, length u32, crc32 u32
    footer        24  index offset u64, tile count u32, index crc32 u32, b"LTCSEND\\0"

The index sits at the end so that a writer streams tiles as they are coded; a reader reads
the header, the footer and the index, then seeks to the tiles it needs (a window decode
touches only those). Every part has its own CRC-32: a corrupted or truncated file is an
error naming the part, never a wrong image. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ltchm.codec.container import ContainerError

__all__ = [
    "MAGIC",
    "READABLE",
    "VERSION",
    "ErrorInfo",
    "MappingInfo",
    "MaskInfo",
    "ModelInfo",
    "SceneHeader",
    "SceneReader",
    "SceneWriter",
    "SourceInfo",
    "TileRecord",
    "TilingInfo",
    "header_of",
    "pack_tile",
    "unpack_tile",
]

MAGIC = b"\x89LTS\r\n\x1a\n"
END = b"LTCSEND\x00"
VERSION = 2
READABLE = (1, 2)  # version 2 added the error-bounded layer and per-tile models
_PREFIX = struct.Struct("<8sBI")
_ENTRY = struct.Struct("<QII")
_FOOTER = struct.Struct("<QII8s")
_CRC = struct.Struct("<I")
MAX_HEADER = 64 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TilingInfo(_Strict):
    tile_size: int = Field(ge=2)
    overlap: int = Field(ge=0)
    blend: int = Field(ge=0, description="width of the linear ramp centred in each overlap")
    padding: Literal["replicate"] = "replicate"


class MappingInfo(_Strict):
    """How coded bands map to the model's [0, 1]: ``x = lo + v * (hi - lo)`` per band.

    ``identity``: 8-bit data, ``v = x / 255``. ``scene-linear``: one ``lo``/``hi`` per band
    for the scene (here). ``tile-linear``: per band per tile (in each tile record).
    """

    mode: Literal["identity", "scene-linear", "tile-linear"]
    lo: list[float] = Field(default_factory=list)
    hi: list[float] = Field(default_factory=list)


class MaskInfo(_Strict):
    """Which validity planes the tiles store losslessly.

    ``nodata``: one plane per band listed in ``bands`` (GDAL's per-band nodata masks);
    ``dataset``: one plane, the raster's own mask band; ``alpha``/``none``: no plane (the
    alpha band is stored losslessly as a band).
    """

    mode: Literal["none", "nodata", "dataset", "alpha"]
    bands: list[int] = Field(default_factory=list)

    @property
    def planes(self) -> int:
        return {"nodata": len(self.bands), "dataset": 1}.get(self.mode, 0)


class ModelInfo(_Strict):
    name: str
    lmbda: float | None
    config_hash: str
    weights_hash: str
    # what decodes the file, for people and for decompress-scene without --model: the
    # context model, and where the model came from (models:/name/version with the store,
    # pretrained:<set>/<λ>, a checkpoint's path)
    context: str | None = None
    source: str | None = None


class ErrorInfo(_Strict):
    """The error-bounded layer the scene was coded with (``None`` in the header: none).

    ``max_error``: the bound E in native units applied to every tile and band (``None``
    with a floor alone: each tile-band below ``psnr_floor`` gets the E that guarantees it).
    Each tile record says which of its bands carry a residual and with which E.
    """

    max_error: float | None = Field(None, ge=0)
    psnr_floor: float | None = Field(None, gt=0)


class SourceInfo(_Strict):
    name: str
    sha256: str
    bytes: int
    driver: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class SceneHeader(_Strict):
    """Everything but the tiles: enough to rebuild the source's GeoTIFF profile."""

    format: Literal["ltchm-scene"] = "ltchm-scene"
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    count: int = Field(ge=1)
    dtype: Literal["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
    crs_wkt: str | None
    transform: list[float] = Field(min_length=6, max_length=6)
    gcps: list[list[float]] | None = None  # [row, col, x, y, z] with crs_wkt as their CRS
    nodata: list[float | str | None]  # per band; "nan" for NaN (JSON has none)
    colorinterp: list[str]
    descriptions: list[str | None]
    units: list[str | None]
    scales: list[float]
    offsets: list[float]
    tags: dict[str, str] = Field(default_factory=dict)
    band_tags: list[dict[str, str]]
    groups: list[list[int]] = Field(description="1-based bands coded as one 3-channel image")
    alpha_band: int | None = None
    mask: MaskInfo
    mapping: MappingInfo
    tiling: TilingInfo
    model: ModelInfo
    source: SourceInfo
    created_by: str = "ltchm"
    # version 2: the error-bounded layer, and the rate points tiles may name (tile records
    # hold an index into ``family``; empty: every tile uses ``model``)
    error: ErrorInfo | None = None
    family: list[ModelInfo] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> SceneHeader:
        # a crafted or damaged header must fail here, by name, not deep in the decoder
        per_band: dict[str, list[Any]] = {
            "nodata": self.nodata, "colorinterp": self.colorinterp,
            "descriptions": self.descriptions, "units": self.units, "scales": self.scales,
            "offsets": self.offsets, "band_tags": self.band_tags,
        }  # fmt: skip
        for key, values in per_band.items():
            if len(values) != self.count:
                raise ValueError(f"{key} lists {len(values)} bands, the scene has {self.count}")
        used = [b for g in self.groups for b in g] + list(self.mask.bands)
        used += [self.alpha_band] if self.alpha_band is not None else []
        bad = [b for b in used if not 1 <= b <= self.count]
        if bad:
            raise ValueError(f"band {bad[0]} does not exist (the scene has {self.count})")
        if any(not 1 <= len(g) <= 3 for g in self.groups):
            raise ValueError("a band group holds more than 3 bands or none")
        if len(self.family) > 255:
            raise ValueError(f"a family of {len(self.family)} models (at most 255)")
        m, coded = self.mapping, len(self.coded_bands)
        if m.mode == "scene-linear" and not len(m.lo) == len(m.hi) == coded:
            raise ValueError(
                f"the scene-linear mapping lists {len(m.lo)} / {len(m.hi)} ranges for "
                f"{coded} coded bands"
            )
        if m.mode != "scene-linear" and (m.lo or m.hi):
            raise ValueError(f"a {m.mode} mapping holds scene ranges")
        return self

    def check_record(self, rec: TileRecord) -> None:
        """Refuse a tile record that does not fit this header: ``ContainerError`` naming the
        field (each field is otherwise read as the header says, and a stray one ignored)."""
        if len(rec.groups) != len(self.groups):
            raise ContainerError(
                f"{len(rec.groups)} band groups, the header codes {len(self.groups)}"
            )
        coded = len(self.coded_bands)
        if (self.mapping.mode == "tile-linear") != (rec.mapping is not None):
            raise ContainerError(f"tile ranges do not fit the {self.mapping.mode} mapping")
        if rec.mapping is not None and len(rec.mapping) != coded:
            raise ContainerError(f"{len(rec.mapping)} tile ranges for {coded} coded bands")
        if rec.alpha and self.alpha_band is None:
            raise ContainerError("an alpha band in a scene without one")
        if rec.mask and not self.mask.planes:
            raise ContainerError(f"mask planes in a scene whose mask mode is {self.mask.mode}")
        if rec.model is not None and not rec.model < len(self.family):
            raise ContainerError(f"names rate point {rec.model} of a family of {len(self.family)}")
        if rec.residuals is not None:
            if self.error is None:
                raise ContainerError("a residual in a scene without an error-bounded layer")
            if len(rec.residuals) != coded:
                raise ContainerError(f"{len(rec.residuals)} residuals for {coded} coded bands")

    @property
    def coded_bands(self) -> list[int]:
        """The bands the model codes, ascending (1-based)."""
        return sorted({b for g in self.groups for b in g})

    @property
    def version(self) -> int:
        """The format version this header needs: 1 unless it uses what version 2 added, so
        that files without those features stay readable by older releases."""
        return 2 if self.error is not None or self.family else 1

    def to_json(self) -> bytes:
        # version-2 keys only where used: a version-1 file's header is what it always was
        unused = {k for k in ("error", "family") if not getattr(self, k)}
        return self.model_dump_json(exclude=unused).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SceneHeader:
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "<root>"
            raise ContainerError(f"invalid .ltcs header: {key}: {first['msg']}") from None


@dataclass
class TileRecord:
    """One tile: the model's streams per band group, and what is stored losslessly.

    ``groups[g]`` is that group's list of streams (y, z); an empty list means the group was
    not coded because every pixel of its bands is invalid in this tile.
    """

    shape: tuple[int, int]  # latent (z) size, shared by the groups of a tile
    groups: list[list[bytes]]
    mapping: list[tuple[float, float]] | None = None  # tile-linear: (lo, hi) per coded band
    mask: bytes = b""  # zlib of np.packbits of the (planes, h, w) validity of the owned region
    alpha: bytes = b""  # zlib of the alpha band over the owned region
    # version 2: per coded band, its residual record over the owned region (b"": none;
    # see pipeline.scenes.residual), and the index of the tile's model in the header's family
    residuals: list[bytes] | None = None
    model: int | None = None


_TILE = struct.Struct("<HHBB")  # latent h, w, groups, flags
_F_MAPPING, _F_MASK, _F_ALPHA, _F_RESIDUAL, _F_MODEL = 1, 2, 4, 8, 16


def pack_tile(t: TileRecord) -> bytes:
    flags = (
        (_F_MAPPING if t.mapping is not None else 0)
        | (_F_MASK if t.mask else 0)
        | (_F_ALPHA if t.alpha else 0)
        | (_F_RESIDUAL if t.residuals and any(t.residuals) else 0)
        | (_F_MODEL if t.model is not None else 0)
    )
    residuals = t.residuals if flags & _F_RESIDUAL else []
    assert residuals is not None
    head = bytearray(_TILE.pack(*t.shape, len(t.groups), flags))
    for streams in t.groups:
        head += struct.pack("<B", len(streams))
        head += b"".join(struct.pack("<I", len(s)) for s in streams)
    if t.mapping is not None:
        head += struct.pack("<H", len(t.mapping))
        head += b"".join(struct.pack("<dd", lo, hi) for lo, hi in t.mapping)
    if t.mask:
        head += struct.pack("<I", len(t.mask))
    if t.alpha:
        head += struct.pack("<I", len(t.alpha))
    if residuals:
        head += struct.pack("<H", len(residuals))
        head += b"".join(struct.pack("<I", len(r)) for r in residuals)
    if t.model is not None:
        head += struct.pack("<B", t.model)
    body = b"".join(s for streams in t.groups for s in streams)
    return bytes(head) + body + t.mask + t.alpha + b"".join(residuals)


def unpack_tile(data: bytes) -> TileRecord:
    """Parse a tile record; :class:`ContainerError` if it is inconsistent."""
    pos = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise ContainerError("tile record truncated")
        out = struct.unpack_from(fmt, data, pos)
        pos += size
        return out

    zh, zw, n_groups, flags = take(_TILE.format)
    lengths = []
    for _ in range(n_groups):
        (n,) = take("<B")
        lengths.append(take(f"<{n}I") if n else ())
    mapping = None
    if flags & _F_MAPPING:
        (n,) = take("<H")
        vals = take(f"<{2 * n}d") if n else ()
        mapping = [(vals[2 * i], vals[2 * i + 1]) for i in range(n)]
    mask_len = take("<I")[0] if flags & _F_MASK else 0
    alpha_len = take("<I")[0] if flags & _F_ALPHA else 0
    res_lens: tuple[int, ...] = ()
    if flags & _F_RESIDUAL:
        (n,) = take("<H")
        res_lens = take(f"<{n}I") if n else ()
    model = take("<B")[0] if flags & _F_MODEL else None
    total = sum(sum(ls) for ls in lengths) + mask_len + alpha_len + sum(res_lens)
    if pos + total != len(data):
        raise ContainerError(
            f"tile record holds {len(data) - pos} payload bytes, its table announces {total}"
        )
    groups = []
    for ls in lengths:
        streams = []
        for n in ls:
            streams.append(data[pos : pos + n])
            pos += n
        groups.append(streams)
    mask = data[pos : pos + mask_len]
    pos += mask_len
    alpha = data[pos : pos + alpha_len]
    pos += alpha_len
    residuals = None
    if res_lens:
        residuals = []
        for n in res_lens:
            residuals.append(data[pos : pos + n])
            pos += n
    return TileRecord((zh, zw), groups, mapping, mask, alpha, residuals, model)


class SceneWriter:
    """Stream a ``.ltcs`` file: the header now, tiles in raster order, the index at close."""

    def __init__(self, path: str | os.PathLike[str], header: SceneHeader, tiles: int) -> None:
        self.path = Path(path)
        self.header = header
        self.tiles = tiles
        self._entries: list[tuple[int, int, int]] = []
        raw = header.to_json()
        self._f: BinaryIO = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        prefix = _PREFIX.pack(MAGIC, header.version, len(raw))
        self._f.write(prefix + raw + _CRC.pack(zlib.crc32(raw)))

    def __enter__(self) -> SceneWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._f.closed:
            self._f.close()

    def add(self, record: bytes) -> None:
        """Append the next tile's packed record (raster order)."""
        if len(self._entries) >= self.tiles:
            raise ValueError(f"the grid has {self.tiles} tiles; got one more")
        offset = self._f.tell()
        self._f.write(record)
        self._entries.append((offset, len(record), zlib.crc32(record)))

    def abort(self) -> None:
        """Close without an index: the file stays incomplete (its caller removes it)."""
        if not self._f.closed:
            self._f.close()

    def close(self) -> None:
        """Write the index and footer; the file is complete after this."""
        if len(self._entries) != self.tiles:
            raise ValueError(f"{len(self._entries)} of {self.tiles} tiles written")
        index = b"".join(_ENTRY.pack(*e) for e in self._entries)
        offset = self._f.tell()
        self._f.write(index)
        self._f.write(_FOOTER.pack(offset, self.tiles, zlib.crc32(index), END))
        self._f.flush()
        self._f.close()


class SceneReader:
    """Random access to a ``.ltcs`` file: the header at once, tiles on demand.

    Raises :class:`~ltchm.codec.container.ContainerError` naming the damaged part.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.tiles_read = 0
        self._f: BinaryIO = open(self.path, "rb")  # noqa: SIM115 (closed in close())
        try:
            self._open()
        except BaseException:
            self._f.close()
            raise

    def _open(self) -> None:
        f = self._f
        size = os.fstat(f.fileno()).st_size
        self.size = size
        prefix = f.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
            raise ContainerError(f"{self.path}: not an .ltcs file (bad magic bytes)")
        _, version, head_len = _PREFIX.unpack(prefix)
        if version not in READABLE:
            raise ContainerError(
                f"{self.path}: unsupported .ltcs version {version}; this ltchm reads "
                f"{', '.join(map(str, READABLE))}"
            )
        self.version = version
        if head_len > MAX_HEADER or _PREFIX.size + head_len + 4 + _FOOTER.size > size:
            raise ContainerError(f"{self.path}: header length exceeds the file: truncated")
        raw = f.read(head_len)
        (crc,) = _CRC.unpack(f.read(4))
        if zlib.crc32(raw) != crc:
            raise ContainerError(f"{self.path}: header checksum mismatch: the file is corrupted")
        self.header = SceneHeader.from_json(raw)
        self._data_start = _PREFIX.size + head_len + 4
        f.seek(size - _FOOTER.size)
        index_off, n, index_crc, end = _FOOTER.unpack(f.read(_FOOTER.size))
        if end != END:
            raise ContainerError(f"{self.path}: no end marker: the file is truncated")
        if index_off + n * _ENTRY.size != size - _FOOTER.size or index_off < self._data_start:
            raise ContainerError(f"{self.path}: index position is inconsistent: corrupted")
        f.seek(index_off)
        index = f.read(n * _ENTRY.size)
        if zlib.crc32(index) != index_crc:
            raise ContainerError(f"{self.path}: tile index checksum mismatch: corrupted")
        self.index = [_ENTRY.unpack_from(index, i * _ENTRY.size) for i in range(n)]
        for i, (off, length, _) in enumerate(self.index):
            if off < self._data_start or off + length > index_off:
                raise ContainerError(f"{self.path}: tile {i} lies outside the tile area")

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def __len__(self) -> int:
        return len(self.index)

    def tile_bytes(self, i: int) -> bytes:
        """The packed record of tile ``i``, its CRC checked."""
        if not 0 <= i < len(self.index):
            raise IndexError(f"tile {i} outside the file's {len(self.index)} tiles")
        off, length, crc = self.index[i]
        self._f.seek(off)
        data = self._f.read(length)
        if len(data) != length or zlib.crc32(data) != crc:
            raise ContainerError(f"{self.path}: tile {i}: checksum mismatch: the file is corrupted")
        self.tiles_read += 1
        return data

    def tile(self, i: int) -> TileRecord:
        try:
            rec = unpack_tile(self.tile_bytes(i))
            self.header.check_record(rec)
            return rec
        except ContainerError as exc:
            if str(exc).startswith(str(self.path)):
                raise
            raise ContainerError(f"{self.path}: tile {i}: {exc}") from None


def header_of(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of a file as a plain dict (for ``ltchm decompress-scene --info``)."""
    with SceneReader(path) as r:
        header: dict[str, Any] = json.loads(r.header.to_json())
    return header
