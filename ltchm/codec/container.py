"""The ``.ltc`` container: one image, coded by one model, as one self-checking file.

Layout (little-endian)::

    magic            8  b"\\x89LTC\\r\\n\\x1a\\n"  (PNG-style: catches text-mode mangling)
    version          1  format version (2; version 1, without the source, is still read)
    header length    4  bytes of the header that follows
    header              the model identity (name, lambda, config and weights hashes, and
                        where the weights came from: a registered version with its store,
                        a checkpoint path, a pretrained set), the image geometry, the
                        context mode, padding, tile grid and every stream length
    payload             the streams, tile by tile, in header order
    crc32            4  of everything before it

No pickle: every field is a fixed-width number or a length-prefixed ASCII string.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from ltchm.codec.identity import ModelIdentity

__all__ = [
    "MAGIC",
    "READABLE_VERSIONS",
    "VERSION",
    "ContainerError",
    "LtcFile",
    "Tile",
    "bits_per_pixel",
    "pack",
    "unpack",
]

MAGIC = b"\x89LTC\r\n\x1a\n"
VERSION = 2
READABLE_VERSIONS = (1, 2)
CONTEXTS = ("autoregressive", "checkerboard", "none")
PADDINGS = ("replicate",)
MAX_STREAMS = 255


class ContainerError(ValueError):
    """A file that is not a valid ``.ltc`` container (truncated, corrupted, other format)."""


@dataclass
class Tile:
    """One independently coded tile: its latent shape and its streams (z first)."""

    shape: tuple[int, int]
    streams: list[bytes]


@dataclass
class LtcFile:
    identity: ModelIdentity
    height: int
    width: int
    context: str
    padding: str
    tile_size: int  # 0: one tile
    tiles: list[Tile] = field(default_factory=list)
    source: str = ""  # see ltchm.codec.spec.spec_source; "" in version 1 files


def bits_per_pixel(nbytes: int, height: int, width: int) -> float:
    """Bits per pixel of a file of ``nbytes`` coding a ``height`` x ``width`` image."""
    return 8.0 * nbytes / (height * width) if height * width else math.nan


def _str(s: str) -> bytes:
    raw = s.encode("ascii")
    if len(raw) > 255:
        raise ValueError(f"string too long for the container: {s!r}")
    return struct.pack("<B", len(raw)) + raw


def _long_str(s: str) -> bytes:
    # a source names a file path and a tracking URI: longer than a model name may be
    raw = s.encode("utf-8")
    if len(raw) > 65535:
        raise ValueError("model source too long for the container")
    return struct.pack("<H", len(raw)) + raw


def pack(f: LtcFile) -> bytes:
    """Serialize ``f``."""
    ident = f.identity
    head = bytearray()
    head += _str(ident.name)
    head += struct.pack("<d", ident.lmbda)
    head += bytes.fromhex(ident.config_hash[:16]) + bytes.fromhex(ident.weights_hash[:16])
    head += _long_str(f.source)
    head += struct.pack(
        "<IIBBII",
        f.height,
        f.width,
        CONTEXTS.index(f.context),
        PADDINGS.index(f.padding),
        f.tile_size,
        len(f.tiles),
    )
    for tile in f.tiles:
        if len(tile.streams) > MAX_STREAMS:
            raise ValueError("too many streams in a tile")
        head += struct.pack("<HHB", *tile.shape, len(tile.streams))
        head += b"".join(struct.pack("<I", len(s)) for s in tile.streams)
    body = MAGIC + struct.pack("<BI", VERSION, len(head)) + bytes(head)
    body += b"".join(s for tile in f.tiles for s in tile.streams)
    return body + struct.pack("<I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.pos, self.end = data, start, end

    def take(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > self.end:
            raise ContainerError("header truncated")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def string(self, length: str = "<B", encoding: str = "ascii") -> str:
        (n,) = self.take(length)
        if self.pos + n > self.end:
            raise ContainerError("header truncated")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            raise ContainerError(f"header holds a string that is not {encoding}") from None


def unpack(data: bytes) -> LtcFile:
    """Parse and verify a container; raise :class:`ContainerError` on any inconsistency."""
    if len(data) < len(MAGIC) + 9:
        raise ContainerError(f"file too short to be an .ltc container ({len(data)} bytes)")
    if data[: len(MAGIC)] != MAGIC:
        raise ContainerError("not an .ltc file (bad magic bytes)")
    version, head_len = struct.unpack_from("<BI", data, len(MAGIC))
    if version not in READABLE_VERSIONS:
        raise ContainerError(
            f"unsupported .ltc format version {version}; this ltchm reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} (a newer ltchm wrote it?)"
        )
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise ContainerError("checksum mismatch: the file is truncated or corrupted")
    start = len(MAGIC) + 5
    end = start + head_len
    if end > len(data) - 4:
        raise ContainerError("header length exceeds the file: truncated")
    r = _Reader(data, start, end)
    name = r.string()
    (lmbda,) = r.take("<d")
    hashes = r.take("<8s8s")
    source = r.string("<H", "utf-8") if version >= 2 else ""
    height, width, ctx, pad, tile_size, n_tiles = r.take("<IIBBII")
    if ctx >= len(CONTEXTS) or pad >= len(PADDINGS):
        raise ContainerError("unknown context mode or padding code")
    if n_tiles > (end - r.pos) // 5:
        raise ContainerError("tile count exceeds the header")
    shapes, lengths = [], []
    for _ in range(n_tiles):
        h, w, n = r.take("<HHB")
        shapes.append((h, w))
        lengths.append(r.take(f"<{n}I") if n else ())
    if r.pos != end:
        raise ContainerError("header length does not match its contents")
    payload_end = end + sum(sum(ls) for ls in lengths)
    if payload_end != len(data) - 4:
        raise ContainerError(
            f"payload holds {len(data) - 4 - end} bytes, the header announces "
            f"{payload_end - end}: truncated or corrupted"
        )
    tiles, pos = [], end
    for shape, ls in zip(shapes, lengths, strict=True):
        streams = []
        for n in ls:
            streams.append(data[pos : pos + n])
            pos += n
        tiles.append(Tile(shape, streams))
    identity = ModelIdentity(name, lmbda, hashes[0].hex(), hashes[1].hex())
    return LtcFile(identity, height, width, CONTEXTS[ctx], PADDINGS[pad], tile_size, tiles, source)
