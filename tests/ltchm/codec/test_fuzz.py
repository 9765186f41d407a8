"""Crafted ``.ltc`` files: every field made inconsistent with the others, the checksum
recomputed so the container's own checks pass. Each must fail with a one-line ``ValueError``
within a fixed memory limit (a latent size that is never checked used to make ``decode``
allocate whatever the file asked for)."""

from __future__ import annotations

import json

from processes import run_capped

# Runs in a child whose address space is capped (run_capped) once torch and the model are
# loaded: an allocation the file asks for beyond the cap fails as a MemoryError/RuntimeError,
# which the parent reports instead of a clean error.
_CHILD = r"""
import copy, dataclasses, json, sys
import torch
from ltchm.codec.container import Tile, pack, unpack
from ltchm.codec.image import ImageCodec
from ltchm.zoo import get_model

torch.manual_seed(0)
codec = ImageCodec(get_model("ltchm-baseline", N=8, context="checkerboard"), tile_size=128)
good = unpack(codec.encode(torch.rand(3, 200, 150)))
assert len(good.tiles) == 4

def replace(**kw):
    return dataclasses.replace(copy.deepcopy(good), **kw)

def tiles(fn):
    f = copy.deepcopy(good)
    f.tiles = fn(f.tiles)
    return f

def shaped(i, shape):
    return tiles(lambda ts: [Tile(shape, t.streams) if j == i else t for j, t in enumerate(ts)])

def streams(i, fn):
    return tiles(lambda ts: [Tile(t.shape, fn(t.streams)) if j == i else t
                             for j, t in enumerate(ts)])

BIG = 60000
cases = {
    "height x2": replace(height=400),
    "height huge": replace(height=BIG, width=BIG),
    "width 0": replace(width=0),
    "tile size 0": replace(tile_size=0),
    "tile size 64": replace(tile_size=64),
    "tile size 100": replace(tile_size=100),
    "tile size huge": replace(tile_size=2**31),
    "huge image, one tile": replace(height=BIG, width=BIG, tile_size=0),
    "latent 2000x2000": shaped(0, (2000, 2000)),
    "latent 65535x1": shaped(1, (65535, 1)),
    "latent 0x0": shaped(2, (0, 0)),
    "tile dropped": tiles(lambda ts: ts[:-1]),
    "tile duplicated": tiles(lambda ts: ts + ts[:1]),
    "no tiles": tiles(lambda ts: []),
    "tiles swapped": tiles(lambda ts: ts[::-1]),
    "y stream cut": streams(0, lambda s: [s[0][: len(s[0]) // 2], s[1]]),
    "z stream cut": streams(0, lambda s: [s[0], s[1][:1]]),
    "streams swapped": streams(0, lambda s: s[::-1]),
    "one stream": streams(0, lambda s: s[:1]),
    "three streams": streams(0, lambda s: s + s[:1]),
    "empty streams": streams(0, lambda s: [b"", b""]),
    "y stream junk": streams(3, lambda s: [bytes(len(s[0])), s[1]]),
    "context changed": replace(context="autoregressive"),
    "context none": replace(context="none"),
}
cap_memory()
out = {}
for name, f in cases.items():
    try:
        codec.decode(pack(f))
        out[name] = "decoded"
    except ValueError as exc:
        out[name] = "ValueError: " + str(exc)
    except Exception as exc:
        out[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""

LIMIT = 1 << 30  # bytes a crafted file may make decode allocate beyond the loaded model


def test_crafted_containers_fail_cleanly_within_a_memory_limit() -> None:
    results = run_capped(_CHILD, LIMIT, timeout=600)
    bad = {k: v for k, v in results.items() if not v.startswith("ValueError: ") or "\n" in v}
    assert not bad, json.dumps(bad, indent=1)
    # the geometry checks name what is wrong, not a symptom further down
    assert "latent" in results["latent 2000x2000"]
    assert "tiles" in results["tile dropped"]
    assert "compress-scenes" in results["huge image, one tile"]
