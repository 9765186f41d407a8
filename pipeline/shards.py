"""Writing WebDataset shards from their plan, and the manifest that lists them.

One call of :func:`build_shard` turns one :class:`~pipeline.plan.ShardPlan` into
``{split}-NNNNNN.tar``: it reads each image member, converts it to 8-bit RGB, cuts train tiles
(or keeps the whole image), encodes PNG/lossless WebP and appends ``<key>.json`` and
``<key>.png`` to the tar. The tar goes to a temporary name and is renamed only when complete,
so a shard either exists whole or not at all; a state record written after it lets a re-run
skip it once its sha256 is verified. Tar headers carry fixed mtime/owner/mode and the json is
canonical, so the bytes depend only on the plan and the sources: re-runs, resumes and runs on
other machines produce byte-identical shards.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np

from ltchm.atomic import atomic_path, atomic_write_text
from ltchm.config import PreprocessConfig
from pipeline.archives import MemberError, MemberReader, file_sha256, require_present
from pipeline.decode import DecodeError, RGBImage, decode_image
from pipeline.plan import FORMAT, ImageEntry, Plan, ShardPlan, config_dict
from pipeline.tiling import pad_to, skip_reason, tile_grid
from pipeline.windowed import (
    ImageHeader,
    RasterInfo,
    decode_bytes,
    raster_tiles,
    read_header,
    strips_readable,
)

__all__ = [
    "MANIFEST",
    "SHARD_PATTERN",
    "STATE_DIR",
    "build_manifest",
    "build_shard",
    "encode_image",
    "file_sha256",
    "state_path",
]

MANIFEST = "manifest.json"
STATE_DIR = ".preprocess"
SHARD_PATTERN = re.compile(r"^(train|val|test)-\d{6}\.tar$")
PHASES = ("decode", "tile", "encode", "write")


def state_path(out_dir: Path, name: str) -> Path:
    return out_dir / STATE_DIR / f"{name}.json"


def encode_image(rgb: np.ndarray, cfg: PreprocessConfig) -> bytes:
    """Lossless PNG (fixed zlib level, no timestamp chunk) or lossless WebP of (H, W, 3) uint8."""
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    if cfg.image_format == "png":
        img.save(buf, format="PNG", compress_level=cfg.png_compress_level)
    else:
        # Lowest effort: nearly as small as Pillow's default effort and far faster
        # (benchmarks/RESULTS.md, "Implementation choices").
        img.save(buf, format="WEBP", lossless=True, quality=0, method=0, exact=True)
    return buf.getvalue()


class _SampleWriter:
    """Appends WebDataset samples (``<key>.<ext>`` members, sorted by ext) to a tar stream.

    The same layout as ``webdataset.TarWriter`` with ``mtime=0``, written with :mod:`tarfile`
    directly because importing webdataset imports torch, which costs every fresh Ray worker
    more than a typical shard's work (benchmarks/RESULTS.md, "Implementation choices").
    """

    def __init__(self, fileobj: _HashingWriter) -> None:
        # Stream mode: nothing seeks back, so the hashing wrapper sees every byte once.
        self.tar = tarfile.open(fileobj=cast(Any, fileobj), mode="w|", format=tarfile.USTAR_FORMAT)  # noqa: SIM115

    def write(self, key: str, files: dict[str, bytes]) -> None:
        for ext in sorted(files):
            data = files[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o444
            info.uname = info.gname = "ltchm"
            self.tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self.tar.close()


class _HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through."""

    def __init__(self, f: io.BufferedWriter) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.bytes += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def _meta(
    entry: ImageEntry,
    key: str,
    x: int,
    y: int,
    w: int,
    h: int,
    image: RGBImage | RasterInfo,
    cfg: PreprocessConfig,
    whole: bool,
    padding: dict[str, Any] | None,
    valid: np.ndarray | None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "key": key,
        "dataset": entry.dataset,
        "image_id": entry.image_id,
        "label": entry.label,
        "split": entry.split,
        "source": {"archive": entry.archive, "member": entry.member.path},
        "tile": {"x": x, "y": y, "width": w, "height": h},
        "tile_size": cfg.tile_size,
        "whole_image": whole,
        "image": {
            "width": image.width,
            "height": image.height,
            "bands": image.bands,
            "dtype": image.dtype,
        },
        "valid_fraction": _valid_fraction(valid),
        "stretch": image.stretch,
        "conversions": image.conversions,
        "padding": padding,
        "geo": image.geo,
    }


def _windowed_samples(
    entry: ImageEntry,
    source: bytes | Path,
    header: ImageHeader,
    cfg: PreprocessConfig,
    stats: dict[str, Any],
) -> Iterator[tuple[str, dict[str, Any], bytes]]:
    """The train tiles of a large image, one window (or row strip) at a time."""
    timings = stats["timings"]
    t0 = time.perf_counter()
    info, tiles = raster_tiles(
        source,
        layout=entry.layout,
        tile=cfg.tile_size,
        stride=cfg.stride,
        rgb_bands=cfg.rgb_bands,
        percentiles=cfg.stretch_percentiles,
        strips=header.strips,
    )
    info.conversions.append("read by row strips" if header.strips else "read by windows")
    for note in info.conversions:
        stats["conversions"][note] += 1
    timings["decode"] += time.perf_counter() - t0
    yield from _tile_samples(entry, info, tiles, None, cfg, stats)


def _tile_samples(
    entry: ImageEntry,
    image: RGBImage | RasterInfo,
    tiles: Iterable[tuple[int, int, np.ndarray, np.ndarray | None]],
    padding: dict[str, Any] | None,
    cfg: PreprocessConfig,
    stats: dict[str, Any],
) -> Iterator[tuple[str, dict[str, Any], bytes]]:
    """The samples of an image's train tiles ``(x, y, rgb, valid)``, skip rules applied."""
    timings = stats["timings"]
    for x, y, tile, tvalid in tiles:
        t0 = time.perf_counter()
        reason = skip_reason(tile, tvalid, cfg.skip_nodata_fraction, cfg.skip_constant_std)
        timings["tile"] += time.perf_counter() - t0
        if reason:
            stats["tiles_skipped"][reason] += 1
            continue
        key = f"{entry.key}_x{x:05d}_y{y:05d}"
        h, w = tile.shape[:2]
        meta = _meta(entry, key, x, y, w, h, image, cfg, False, padding, tvalid)
        t0 = time.perf_counter()
        data = encode_image(tile, cfg)
        timings["encode"] += time.perf_counter() - t0
        yield key, meta, data


def _samples(
    entry: ImageEntry, source: bytes | Path, cfg: PreprocessConfig, stats: dict[str, Any]
) -> Iterator[tuple[str, dict[str, Any], bytes]]:
    """Yield ``(key, metadata, encoded image)`` for one image; update ``stats``."""
    timings = stats["timings"]
    t0 = time.perf_counter()
    whole = entry.split not in cfg.tile_splits
    header = read_header(source, entry.member.path)
    need = decode_bytes(header)
    if need > min(cfg.window_reads_above, cfg.max_worker_memory):
        streamable = header.windowed or (header.strips and strips_readable(source, header.bands))
        if streamable and not whole and min(header.width, header.height) >= cfg.tile_size:
            yield from _windowed_samples(entry, source, header, cfg, stats)
            return
        if need > cfg.max_worker_memory:
            why = (
                "a whole-image split keeps it in one piece"
                if streamable
                else "its format cannot be read by windows"
            )
            raise DecodeError(
                f"{header.width}x{header.height}: decoding it needs about "
                f"{need / 2**30:.1f} GiB, over preprocess.max_worker_memory "
                f"({cfg.max_worker_memory / 2**30:.1f} GiB), and {why}"
            )
    image = decode_image(
        source,
        entry.member.path,
        layout=entry.layout,
        rgb_bands=cfg.rgb_bands,
        percentiles=cfg.stretch_percentiles,
        max_pixels=cfg.max_image_pixels,
    )
    timings["decode"] += time.perf_counter() - t0
    for note in image.conversions:
        stats["conversions"][note] += 1
    size = cfg.tile_size
    small = image.width < size or image.height < size
    if small and cfg.small_image == "skip":
        raise DecodeError(
            f"{image.width}x{image.height} is smaller than a {size}x{size} tile "
            "(preprocess.small_image=skip)"
        )
    if whole:
        t0 = time.perf_counter()
        reason = skip_reason(
            image.rgb, image.valid, cfg.skip_nodata_fraction, cfg.skip_constant_std
        )
        timings["tile"] += time.perf_counter() - t0
        if reason:
            raise DecodeError(f"whole image is {reason} (skip rule)")
        w, h = image.width, image.height
        meta = _meta(entry, entry.key, 0, 0, w, h, image, cfg, True, None, image.valid)
        t0 = time.perf_counter()
        data = encode_image(image.rgb, cfg)
        timings["encode"] += time.perf_counter() - t0
        yield entry.key, meta, data
        return
    t0 = time.perf_counter()
    rgb, valid, padding = image.rgb, image.valid, None
    if small:
        rgb, valid = pad_to(rgb, valid, size, cfg.pad_mode)
        padding = {"mode": cfg.pad_mode, "valid_width": image.width, "valid_height": image.height}
        stats["padded_images"] += 1
    grid = tile_grid(rgb.shape[0], rgb.shape[1], size, cfg.stride)
    timings["tile"] += time.perf_counter() - t0
    tiles = (
        (
            x,
            y,
            rgb[y : y + size, x : x + size],
            None if valid is None else valid[y : y + size, x : x + size],
        )
        for x, y in grid
    )
    yield from _tile_samples(entry, image, tiles, padding, cfg, stats)


def _valid_fraction(valid: np.ndarray | None) -> float:
    if valid is None:
        return 1.0
    return round(float(np.count_nonzero(valid)) / valid.size, 6)


def _reuse(shard: ShardPlan, out_dir: Path) -> dict[str, Any] | None:
    """The state record of an already written shard, if its plan and bytes still match."""
    target, state = out_dir / shard.name, state_path(out_dir, shard.name)
    if not (target.is_file() and state.is_file()):
        return None
    try:
        record = json.loads(state.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("plan_hash") != shard.plan_hash or record.get("bytes") != target.stat().st_size:
        return None
    if file_sha256(target) != record.get("sha256"):
        return None
    return record


def build_shard(shard: ShardPlan, out_dir: str | Path, cfg: PreprocessConfig) -> dict[str, Any]:
    """Write one shard (or verify and reuse it); return its record.

    The record: name, split, plan_hash, sha256, bytes, samples, counts per dataset, skipped
    members with reasons, tile skips, conversions, padded images; plus ``timings`` (wall
    seconds per phase: decode, tile, encode, write), ``task`` (start time, wall and CPU
    seconds of the call) and ``reused``, which are not part of the state.
    A bad member is recorded and skipped; only an unusable archive or an I/O error raises.
    """
    out_dir = Path(out_dir)
    start, wall0, cpu0 = time.time(), time.perf_counter(), time.process_time()

    def task() -> dict[str, float]:
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        return {"start": start, "wall": wall, "cpu": cpu}

    reused = _reuse(shard, out_dir)
    if reused is not None:
        return {**reused, "reused": True, "timings": dict.fromkeys(PHASES, 0.0), "task": task()}
    stats: dict[str, Any] = {
        "timings": dict.fromkeys(PHASES, 0.0),
        "conversions": Counter(),
        "tiles_skipped": Counter(),
        "padded_images": 0,
    }
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    skipped: list[dict[str, str]] = []
    samples = 0
    with atomic_path(out_dir / shard.name) as tmp, open(tmp, "wb") as f:
        sink = _HashingWriter(f)
        writer = _SampleWriter(sink)
        with MemberReader() as reader:
            reader.prefetch(e.member for e in shard.images)
            for entry in shard.images:
                t0 = time.perf_counter()
                n_before = samples
                try:
                    local = entry.member.local_path
                    if local is not None:
                        require_present(local)
                    source = local if local is not None else reader.read(entry.member)
                    stats["timings"]["decode"] += time.perf_counter() - t0
                    for key, meta, data in _samples(entry, source, cfg, stats):
                        t0 = time.perf_counter()
                        text = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
                        writer.write(key, {"json": text, cfg.image_format: data})
                        stats["timings"]["write"] += time.perf_counter() - t0
                        samples += 1
                except (MemberError, DecodeError) as exc:
                    skipped.append(
                        {
                            "archive": entry.archive,
                            "member": entry.member.path,
                            "split": shard.split,
                            "reason": str(exc),
                        }
                    )
                    continue
                counts[entry.dataset]["images"] += 1
                counts[entry.dataset]["samples"] += samples - n_before
        t0 = time.perf_counter()
        writer.close()
        f.flush()
        stats["timings"]["write"] += time.perf_counter() - t0
    record = {
        "name": shard.name,
        "split": shard.split,
        "plan_hash": shard.plan_hash,
        "sha256": sink.sha.hexdigest(),
        "bytes": sink.bytes,
        "samples": samples,
        "counts": {d: dict(sorted(c.items())) for d, c in sorted(counts.items())},
        "skipped": skipped,
        "tiles_skipped": dict(sorted(stats["tiles_skipped"].items())),
        "conversions": dict(sorted(stats["conversions"].items())),
        "padded_images": stats["padded_images"],
    }
    # After the rename: a shard without its record is rebuilt, never trusted.
    atomic_write_text(state_path(out_dir, shard.name), json.dumps(record, indent=1))
    return {**record, "reused": False, "timings": stats["timings"], "task": task()}


def build_manifest(plan: Plan, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest: config, sources, counts per split and dataset, shards, what was skipped.

    Deterministic (no timestamps, sorted keys): identical inputs and config give an identical
    manifest.
    """
    by_name = {r["name"]: r for r in records}
    missing = [s.name for s in plan.shards if s.name not in by_name]
    if missing:
        raise RuntimeError(f"no record for shards {missing[:5]}{'...' if len(missing) > 5 else ''}")
    ordered = [by_name[s.name] for s in plan.shards]
    counts: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    totals: Counter[str] = Counter()
    tiles_skipped: Counter[str] = Counter()
    conversions: Counter[str] = Counter()
    skipped = list(plan.skipped)
    for r in ordered:
        for dataset, c in r["counts"].items():
            counts[r["split"]][dataset].update(c)
        totals[r["split"]] += r["samples"]
        tiles_skipped.update(r["tiles_skipped"])
        conversions.update(r["conversions"])
        skipped.extend(r["skipped"])
    return {
        "format": FORMAT,
        "config": config_dict(plan.config),
        "sources": plan.sources,
        "counts": {
            split: {d: dict(sorted(c.items())) for d, c in sorted(per.items())}
            for split, per in sorted(counts.items())
        },
        "samples": dict(sorted(totals.items())),
        "images": sum(c["images"] for per in counts.values() for c in per.values()),
        "shards": [
            {
                "name": r["name"],
                "split": r["split"],
                "samples": r["samples"],
                "bytes": r["bytes"],
                "sha256": r["sha256"],
            }
            for r in ordered
        ],
        "skipped": skipped,
        "ignored": plan.ignored,
        "tiles_skipped": dict(sorted(tiles_skipped.items())),
        "conversions": dict(sorted(conversions.items())),
        "padded_images": sum(r["padded_images"] for r in ordered),
        "plan": plan.fingerprint,
    }
