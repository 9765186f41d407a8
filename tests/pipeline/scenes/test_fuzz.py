"""Crafted ``.ltcs`` files: header fields and tile records made inconsistent with each other,
written through :class:`SceneWriter` so that every CRC is right. ``decompress-scene`` must
refuse each with a one-line error (exit 1 or 2, no traceback) within a fixed memory limit."""

from __future__ import annotations

import json
from pathlib import Path

from processes import run_capped

# The child encodes a small scene, crafts the files, then caps its address space (RLIMIT_AS)
# before decoding them: an allocation a file asks for beyond the cap fails as a MemoryError,
# which the parent sees instead of a clean error.
_CHILD = r"""
import contextlib, copy, dataclasses, io, json, sys, zlib
from pathlib import Path
import numpy as np, rasterio, torch
from rasterio.transform import from_origin
from jobs.compress_scenes import main as compress
from ltchm.codec import save_checkpoint
from ltchm.zoo import get_model
from pipeline.scenes.container import SceneReader, SceneWriter, pack_tile
from pipeline.scenes.decompress import main as decompress

work = Path(sys.argv[2])
torch.manual_seed(0)
ckpt = work / "model.pt"
save_checkpoint(get_model("ltchm-baseline", N=8, context="checkerboard"), ckpt, lmbda=512)
rng = np.random.default_rng(0)
data = rng.integers(1, 4000, (3, 130, 150)).astype("uint16")
data[:, :40, :50] = 0  # nodata corner: mask planes
profile = dict(driver="GTiff", width=150, height=130, count=3, dtype="uint16", nodata=0,
               crs="EPSG:32633", transform=from_origin(500000, 4600000, 10, 10))
with rasterio.open(work / "s.tif", "w", **profile) as dst:
    dst.write(data)
args = [str(work / "s.tif"), "--out", str(work / "c"), "--model", str(ckpt), "--local",
        "--no-progress", "--no-verify", "--tile-size", "64", "--overlap", "8"]
assert compress(args) == 0
good = work / "c" / "s.ltcs"
with SceneReader(good) as r:
    header, records = r.header, [r.tile(i) for i in range(len(r))]
assert len(records) > 4 and any(rec.mask for rec in records)

def write(name, hdr=None, recs=None):
    path = work / f"{name}.ltcs"
    recs = records if recs is None else recs
    with SceneWriter(path, hdr or header, len(recs)) as w:
        for rec in recs:
            w.add(pack_tile(rec))
        w.close()
    return path

def h(**kw):
    return header.model_copy(update=kw)

def tile(i, **kw):
    recs = [copy.deepcopy(r) for r in records]
    recs[i] = dataclasses.replace(recs[i], **kw)
    return recs

coded = next(i for i, r in enumerate(records) if all(r.groups))
masked = next(i for i, r in enumerate(records) if r.mask)
streams = records[coded].groups
bomb = zlib.compress(bytes(300 << 20), 9)
cases = {
    "width x1000": write("w", h(width=header.width * 1000)),
    "height huge": write("h", h(height=2**31 - 1, width=2**31 - 1)),
    "count + 1": write("c", h(count=header.count + 1)),
    "tile size x1000": write("t", h(tiling=header.tiling.model_copy(update={"tile_size": 64000}))),
    "overlap > tile": write("o", h(tiling=header.tiling.model_copy(update={"overlap": 500}))),
    "mapping short": write("m", h(mapping=header.mapping.model_copy(update={"lo": [0.0]}))),
    "tile dropped": write("d", recs=records[:-1]),
    "tile added": write("a", recs=records + records[:1]),
    "latent 2000x2000": write("l", recs=tile(coded, shape=(2000, 2000))),
    "latent 0x0": write("z", recs=tile(coded, shape=(0, 0))),
    "group missing": write("g", recs=tile(coded, groups=streams[:0])),
    "group extra": write("e", recs=tile(coded, groups=streams + streams)),
    "one stream": write("s", recs=tile(coded, groups=[g[:1] for g in streams])),
    "y stream junk": write("y", recs=tile(coded, groups=[[bytes(len(g[0])), g[1]]
                                                         for g in streams])),
    "mask junk": write("k", recs=tile(masked, mask=b"junk")),
    "mask bomb": write("b", recs=tile(masked, mask=bomb)),
    "mask short": write("q", recs=tile(masked, mask=zlib.compress(b"\xff"))),
    "alpha junk": write("p", recs=tile(coded, alpha=zlib.compress(bytes(7)))),
    "tile mapping": write("r", recs=tile(coded, mapping=[(0.0, 1.0)] * 7)),
    "model index": write("i", recs=tile(coded, model=9)),
    "residuals junk": write("u", recs=tile(coded, residuals=[b"x", b"y", b"z"])),
}
cap_memory()
out = {}
for name, path in cases.items():
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            rc = decompress([str(path), str(work / f"{path.stem}.tif"), "--model", str(ckpt),
                             "--no-progress"])
        out[name] = {"rc": rc, "err": err.getvalue()}
    except BaseException as exc:
        out[name] = {"rc": None, "err": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out))
"""

LIMIT = 1 << 30  # bytes a crafted file may make decompress-scene allocate beyond the model


def test_crafted_scene_files_fail_cleanly_within_a_memory_limit(tmp_path: Path) -> None:
    results = run_capped(_CHILD, LIMIT, str(tmp_path))
    bad = {
        k: v
        for k, v in results.items()
        if v["rc"] not in (1, 2) or v["err"].count("\n") != 1 or "Traceback" in v["err"]
    }
    assert not bad, json.dumps(bad, indent=1)
    assert not list(tmp_path.glob("*.tif.*"))  # no half-written output left behind
