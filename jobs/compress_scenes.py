"""``ltchm compress-scenes``: batch-compress georeferenced scenes into ``.ltcs`` files, on Ray.

    ltchm compress-scenes scenes/ archive.zip one.tif --model models:/ltchm@champion --out out/
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m jobs.compress_scenes /data/scenes --model /data/ltchm.pt --out /data/ltcs

Inputs are GeoTIFFs, folders of them (recursively) or zip/tar archives of them (read in
place through GDAL's /vsizip/ and /vsitar/). A pool of Ray actors, each holding the model
once, works through three kinds of task per scene: *plan* (checksum, description, the
statistics of the bit-depth mapping), *encode* (``chunk_tiles`` tiles at a time, read with
rasterio windows) and *verify* (decode the written file in row bands and compare with the
source, band by band, in the native range). The driver writes each ``.ltcs`` as its tiles
come back (in raster order, to a temporary name, renamed when complete) and the report.

Without ``--address`` or ``RAY_ADDRESS`` a local Ray is started; under ``ray job submit``
the job joins that cluster (inputs and ``--out`` must be on storage every node sees).
Re-running resumes: a scene whose source checksum, model and settings match its record and
whose output is intact is skipped. One bad scene is reported and never stops the batch.
Output: ``<out>/<input name>/<path>.ltcs``, ``report.csv`` and ``report.json``, and
``.compress_scenes/`` (one record per finished scene). Exit status 1 if any scene failed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import hashlib
import heapq
import io
import itertools
import json
import math
import os
import re
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from jobs.output_lock import OutputDirError, locked_output
from jobs.ray_cluster import ray_session
from ltchm.atomic import atomic_path, atomic_write_text
from ltchm.config import ConfigError, ScenesConfig, load_config
from pipeline.archives import RASTER_SUFFIXES, ArchiveError, Member, list_source

__all__ = ["OutputDirError", "Scene", "SceneWorker", "compress_scenes", "list_scenes", "main"]

STATE_DIR = ".compress_scenes"
REPORT_FIELDS = (
    "scene", "status", "output", "width", "height", "bands", "dtype", "tiles", "bytes", "bpp",
    "psnr_db", "psnr_min_db", "psnr_peak", "seconds", "encode_seconds", "verify_seconds",
    "source_sha256", "output_sha256", "error",
)  # fmt: skip
_TEMP = re.compile(r"^\..+\.ltcs\.[^.]+\.ltcs$")
_RANK = {"verify": 0, "encode": 1, "plan": 2}  # finish started scenes before planning more


# -- inputs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scene:
    """One source raster: where GDAL reads it, its report name, its output path."""

    key: str  # e.g. "archive.zip/folder/a.tif"
    gdal_path: str
    out: str  # relative to --out
    member: dict[str, Any]


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
            scenes.append(Scene(key, m.gdal_path, out, _member_dict(m)))
    return scenes, bad


def _member_dict(m: Member) -> dict[str, Any]:
    return {k: getattr(m, k) for k in ("source", "kind", "name", "path", "size", "offset")}


def member_sha256(member: dict[str, Any], chunk: int = 1 << 22) -> str:
    """sha256 of a member's bytes, streamed (files, zip and tar members)."""
    h = hashlib.sha256()
    kind, source, name = member["kind"], member["source"], member["name"]
    with contextlib.ExitStack() as stack:
        if kind in ("file", "folder"):
            path = Path(source) if kind == "file" else Path(source) / name
            f: IO[bytes] = stack.enter_context(open(path, "rb"))
            remaining = None
        elif kind == "zip":
            zf = stack.enter_context(zipfile.ZipFile(source))
            f = stack.enter_context(zf.open(name))
            remaining = None
        elif kind == "tar":
            f = stack.enter_context(open(source, "rb"))
            f.seek(member["offset"])
            remaining = member["size"]
        else:  # compressed tar: no random access
            tf = stack.enter_context(tarfile.open(source, "r|*"))
            f = None  # type: ignore[assignment]
            for info in tf:
                if info.name == name:
                    f = tf.extractfile(info)  # type: ignore[assignment]
                    break
            if f is None:
                raise FileNotFoundError(f"{source}: member {name} not found")
            remaining = None
        while remaining is None or remaining > 0:
            block = f.read(chunk if remaining is None else min(chunk, remaining))
            if not block:
                break
            h.update(block)
            if remaining is not None:
                remaining -= len(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    return member_sha256({"kind": "file", "source": str(path), "name": ""})


# -- the worker --------------------------------------------------------------------------------
class SceneTaskError(RuntimeError):
    """A task's failure, described where it happened (Ray does not carry exception chains)."""


def _described(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            raise SceneTaskError(_describe_error(exc)) from None

    return wrapper


class SceneWorker:
    """Holds the model; plans, encodes and verifies pieces of scenes. A Ray actor in the job."""

    def __init__(
        self, spec: str, config: str | None, device: str, threads: int, cfg_json: str
    ) -> None:
        import warnings

        import torch

        from ltchm.codec.spec import load_model
        from ltchm.runtime import tune_allocator
        from pipeline.scenes.tiles import TileCoder

        tune_allocator()
        torch.set_num_threads(threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # untrained registry models: once
            model = load_model(spec, config, device)
        self.coder = TileCoder(model, device)
        self.cfg = ScenesConfig.model_validate_json(cfg_json)

    @classmethod
    def from_coder(cls, coder: Any, cfg: ScenesConfig) -> SceneWorker:
        """A worker around a loaded model (the in-process pool)."""
        worker = cls.__new__(cls)
        worker.coder, worker.cfg = coder, cfg
        return worker

    def weights_hash(self) -> str:
        return self.coder.identity.weights_hash

    @_described
    def plan(self, scene: Scene, resume: dict[str, Any] | None, out_dir: str) -> dict[str, Any]:
        from pipeline.scenes.encode import plan_scene

        t0 = time.perf_counter()
        sha = member_sha256(scene.member)
        if resume and resume.get("source_sha256") == sha:
            out = Path(out_dir) / scene.out
            if out.is_file() and file_sha256(out) == resume.get("output_sha256"):
                return {"resumed": True}
        header = plan_scene(
            scene.gdal_path,
            self.cfg,
            self.coder.identity,
            name=scene.key,
            sha256=sha,
            size=scene.member["size"],
        )
        return {"header": header.model_dump_json(), "seconds": time.perf_counter() - t0}

    @_described
    def encode(self, scene: Scene, header_json: str, indices: list[int]) -> dict[str, Any]:
        from ltchm.codec.scene_container import SceneHeader
        from pipeline.scenes.encode import encode_tiles

        t0 = time.perf_counter()
        header = SceneHeader.model_validate_json(header_json)
        records = encode_tiles(scene.gdal_path, header, indices, self.coder)
        return {"records": records, "seconds": time.perf_counter() - t0}

    @_described
    def verify(self, scene: Scene, ltcs: str, rows: tuple[int, int]) -> dict[str, Any]:
        from rasterio.windows import Window

        from ltchm.codec.scene_container import SceneReader
        from pipeline.scenes.mosaic import SceneDecoder
        from pipeline.scenes.verify import window_errors

        t0 = time.perf_counter()
        with SceneReader(ltcs) as reader:
            decoder = SceneDecoder(reader, self.coder)
            w = Window(0, rows[0], reader.header.width, rows[1] - rows[0])
            errors = window_errors(decoder, scene.gdal_path, w)
        return {"errors": errors.to_dict(), "seconds": time.perf_counter() - t0}


# -- pools: Ray actors, or this process --------------------------------------------------------
@dataclass(order=True)
class _Item:
    priority: tuple
    kind: str = field(compare=False)
    scene: int = field(compare=False)
    args: tuple = field(compare=False)
    attempts: int = field(default=0, compare=False)


class _LocalPool:
    """Runs items in this process, one at a time (``--local``: no Ray)."""

    def __init__(self, worker: SceneWorker) -> None:
        self.worker = worker
        self._done: list[tuple[_Item, Any, BaseException | None]] = []

    def free_slots(self) -> int:
        return 0 if self._done else 1

    def submit(self, item: _Item) -> None:
        try:
            self._done.append((item, getattr(self.worker, item.kind)(*item.args), None))
        except Exception as exc:
            self._done.append((item, None, exc))

    def busy(self) -> bool:
        return bool(self._done)

    def next(self) -> tuple[_Item, Any, BaseException | None, bool]:
        item, result, exc = self._done.pop(0)
        return item, result, exc, False


class _RayPool:
    """Actors with the model loaded once each; at most ``depth`` calls queued per actor.

    Plain actors rather than Ray Data: the work is discovered as it goes (a scene's encode
    tasks exist once it is planned, its verify tasks once its file is written) and each
    worker must keep its model between tasks. Ray Data's actor pool starts its actors per
    dataset, and its streaming executor kept 1.75 of 2 workers busy where plain calls kept
    1.94 (benchmarks/RESULTS.md, preprocessing). Two calls queued per actor hide the
    round trip between one task's end and the next one's start.
    """

    def __init__(self, actors: list[Any], depth: int = 2) -> None:
        self.actors = actors
        self.depth = depth
        self.load = {i: 0 for i in range(len(actors))}
        self.in_flight: dict[Any, tuple[int, _Item]] = {}

    def free_slots(self) -> int:
        return sum(self.depth - n for n in self.load.values())

    def submit(self, item: _Item) -> None:
        i = min(self.load, key=lambda k: self.load[k])
        ref = getattr(self.actors[i], item.kind).remote(*item.args)
        self.load[i] += 1
        self.in_flight[ref] = (i, item)

    def busy(self) -> bool:
        return bool(self.in_flight)

    def next(self) -> tuple[_Item, Any, BaseException | None, bool]:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        [ref], _ = ray.wait(list(self.in_flight), num_returns=1)
        i, item = self.in_flight.pop(ref)
        self.load[i] -= 1
        try:
            return item, ray.get(ref), None, False
        except RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return item, None, cause, False
        except RayActorError as exc:  # the worker process died: retry the item elsewhere
            return item, None, exc, True


# -- the job -----------------------------------------------------------------------------------
@dataclass
class _State:
    """A scene in progress."""

    scene: Scene
    index: int
    t0: float
    header: Any = None
    chunks: list[list[int]] = field(default_factory=list)
    ready: dict[int, list[bytes]] = field(default_factory=dict)
    next_chunk: int = 0
    writer: Any = None
    stack: contextlib.ExitStack | None = None
    bands_todo: int = 0
    errors: Any = None
    encode_s: float = 0.0
    verify_s: float = 0.0
    failed: bool = False
    renamed: bool = False  # the complete file is in place (verification may still fail)


def fingerprint(cfg: ScenesConfig, weights_hash: str) -> str:
    """What a finished file depends on besides its source: model and coding settings."""
    keys = ("tile_size", "overlap", "blend_width", "bit_mapping", "band_groups")
    data = {k: getattr(cfg, k) for k in keys} | {"weights": weights_hash, "format": 1}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def _record_path(out_dir: Path, scene: Scene) -> Path:
    digest = hashlib.sha256(scene.key.encode()).hexdigest()[:24]
    return out_dir / STATE_DIR / "records" / f"{digest}.json"


def _load_record(out_dir: Path, scene: Scene, fp: str) -> dict[str, Any] | None:
    path = _record_path(out_dir, scene)
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if record.get("fingerprint") != fp or record.get("scene") != scene.key:
        return None
    return record


def _clear_temps(out_dir: Path) -> None:
    """Temporary files of killed runs (never complete, never renamed)."""
    for dirpath, _, files in os.walk(out_dir):
        for f in files:
            if _TEMP.match(f) or f.endswith(".stage.tif"):
                Path(dirpath, f).unlink(missing_ok=True)


def _psnr_fields(errors: Any, dtype: str) -> dict[str, Any]:
    from pipeline.scenes.verify import psnr_db

    psnr, peaks = psnr_db(errors, dtype)
    finite = [p for p in psnr if p is not None]
    return {
        "psnr_db": [None if p is None else (p if math.isinf(p) else round(p, 3)) for p in psnr],
        "psnr_min_db": round(min(finite), 3) if finite else None,
        "psnr_peak": peaks,
    }


@dataclass
class CompressResult:
    rows: list[dict[str, Any]]
    out_dir: Path
    seconds: float

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]


def compress_scenes(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    model: str,
    cfg: ScenesConfig,
    *,
    config: str | None = None,
    device: str = "cpu",
    address: str | None = None,
    use_ray: bool = True,
    progress: bool = True,
) -> CompressResult:
    """Compress every scene of ``inputs`` into ``out_dir``; see the module docstring.

    Args:
        model: a model SPEC (checkpoint, ``models:/name@alias``, registry name).
        config: config file for a registry-name SPEC (its ``model`` section).
        use_ray: False runs everything in this process (debugging, the benchmark baseline).

    Raises:
        OutputDirError: another job holds ``out_dir``. ValueError / ConfigError: bad model.
    """
    from tqdm.auto import tqdm

    from ltchm.codec.spec import load_model
    from ltchm.codec.store import store_model
    from pipeline.scenes.tiles import TileCoder

    t_start = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    scenes, bad = list_scenes(inputs)
    # The driver loads the model once: a bad SPEC fails here, before any cluster work, and the
    # local store gets a copy so that 'ltchm decompress-scene' needs no --model.
    driver_model = load_model(model, config, device)
    driver_coder = TileCoder(driver_model, device)
    weights = driver_coder.identity.weights_hash
    store_model(driver_coder.model, weights)
    fp = fingerprint(cfg, weights)
    out_dir.mkdir(parents=True, exist_ok=True)
    with locked_output(out_dir, STATE_DIR, "compress-scenes"):
        _clear_temps(out_dir)
        records = {i: _load_record(out_dir, s, fp) for i, s in enumerate(scenes)}
        with contextlib.ExitStack() as stack:
            if use_ray:
                pool: Any = stack.enter_context(_pool_ray(model, config, device, cfg, address))
                hashes = _actor_hashes(pool)
                if any(h != weights for h in hashes):
                    raise ValueError(
                        f"the Ray workers loaded other weights for {model!r} than this process "
                        "(a checkpoint that differs between nodes?)"
                    )
            else:
                pool = _LocalPool(SceneWorker.from_coder(driver_coder, cfg))
            bar = stack.enter_context(
                tqdm(
                    total=0,
                    unit="tile",
                    desc="compress-scenes",
                    disable=not progress,
                    dynamic_ncols=True,
                    mininterval=0.1 if sys.stderr.isatty() else 30.0,
                )
            )
            rows = _Job(pool, scenes, records, out_dir, cfg, fp, bar).run()
    ordered = [rows[i] for i in range(len(scenes))]
    ordered += [_failed_row(name, reason) for name, reason in bad]
    _write_report(out_dir, ordered)
    return CompressResult(ordered, out_dir, time.perf_counter() - t_start)


@contextlib.contextmanager
def _pool_ray(
    model: str, config: str | None, device: str, cfg: ScenesConfig, address: str | None
) -> Iterator[_RayPool]:
    import ray

    with ray_session(address):
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = cfg.workers or max(1, cpus // cfg.cpus_per_worker)
        gpus = 1 if device.startswith("cuda") else 0
        actor_cls = ray.remote(SceneWorker).options(
            num_cpus=cfg.cpus_per_worker, num_gpus=gpus, max_restarts=-1, max_task_retries=0
        )
        actors = [
            actor_cls.remote(model, config, device, cfg.cpus_per_worker, cfg.model_dump_json())
            for _ in range(workers)
        ]
        try:
            yield _RayPool(actors)
        finally:
            for a in actors:
                ray.kill(cast(Any, a))


def _actor_hashes(pool: _RayPool) -> list[str]:
    import ray

    return ray.get([a.weights_hash.remote() for a in pool.actors])


class _Job:
    """The driver's loop: hands out work by priority, assembles files, finishes scenes."""

    def __init__(
        self,
        pool: Any,
        scenes: list[Scene],
        records: dict[int, dict[str, Any] | None],
        out_dir: Path,
        cfg: ScenesConfig,
        fp: str,
        bar: Any,
    ) -> None:
        self.pool, self.scenes, self.records = pool, scenes, records
        self.out_dir, self.cfg, self.fp, self.bar = out_dir, cfg, fp, bar
        self.rows: dict[int, dict[str, Any]] = {}
        self.states = {s: _State(scene, s, time.perf_counter()) for s, scene in enumerate(scenes)}
        self._heap: list[_Item] = []
        self._counter = itertools.count()

    def push(self, kind: str, s: int, args: tuple, sub: int = 0) -> None:
        prio = (s, _RANK[kind], sub, next(self._counter))
        heapq.heappush(self._heap, _Item(prio, kind, s, args))

    def run(self) -> dict[int, dict[str, Any]]:
        for s, scene in enumerate(self.scenes):
            self.push("plan", s, (scene, self.records[s], str(self.out_dir)))
        while self._heap or self.pool.busy():
            while self._heap and self.pool.free_slots() > 0:
                item = heapq.heappop(self._heap)
                st = self.states[item.scene]
                if st.failed:
                    continue
                if item.kind == "plan":
                    st.t0 = time.perf_counter()
                self.pool.submit(item)
            if not self.pool.busy():
                continue
            item, result, exc, retry = self.pool.next()
            st = self.states[item.scene]
            if st.failed:
                continue
            if exc is not None:
                if retry and item.attempts < 1:
                    item.attempts += 1
                    heapq.heappush(self._heap, item)
                else:
                    self.fail(st, exc)
                continue
            try:
                getattr(self, f"_on_{item.kind}")(st, item, result)
            except Exception as e:
                self.fail(st, e)
        return self.rows

    def fail(self, st: _State, exc: BaseException) -> None:
        st.failed = True
        msg = _describe_error(exc)
        if st.stack is not None:  # not renamed yet: close and remove the temporary file
            with contextlib.suppress(Exception):
                st.writer.abort()
            st.stack.__exit__(type(exc), exc, None)
            st.stack = None
        elif st.renamed:  # written but failed its verification: removed
            (self.out_dir / st.scene.out).unlink(missing_ok=True)
        self.rows[st.index] = _failed_row(st.scene.key, msg, time.perf_counter() - st.t0)
        failed = sum(r["status"] == "failed" for r in self.rows.values())
        self.bar.set_postfix(failed=failed, refresh=False)

    def _on_plan(self, st: _State, item: _Item, result: dict[str, Any]) -> None:
        from ltchm.codec.scene_container import SceneHeader, SceneWriter
        from pipeline.scenes.mosaic import grid_of

        if result.get("resumed"):
            row = self.records[st.index]["row"]  # type: ignore[index]
            self.rows[st.index] = {**row, "status": "skipped", "error": None}
            return
        st.header = SceneHeader.model_validate_json(result["header"])
        n = len(grid_of(st.header))
        k = self.cfg.chunk_tiles
        st.chunks = [list(range(i, min(i + k, n))) for i in range(0, n, k)]
        st.stack = contextlib.ExitStack()
        tmp = st.stack.enter_context(atomic_path(self.out_dir / st.scene.out))
        st.writer = SceneWriter(tmp, st.header, n)
        st.encode_s += result["seconds"]
        self.bar.total += n
        self.bar.refresh()
        for c, chunk in enumerate(st.chunks):
            self.push("encode", st.index, (st.scene, result["header"], chunk), sub=c)

    def _on_encode(self, st: _State, item: _Item, result: dict[str, Any]) -> None:
        from pipeline.scenes.mosaic import grid_of

        st.ready[item.priority[2]] = result["records"]
        st.encode_s += result["seconds"]
        self.bar.update(len(result["records"]))
        while st.next_chunk in st.ready:  # tiles go into the file in raster order
            for rec in st.ready.pop(st.next_chunk):
                st.writer.add(rec)
            st.next_chunk += 1
        if st.next_chunk < len(st.chunks):
            return
        st.writer.close()
        assert st.stack is not None
        st.stack.close()  # renamed: the file is complete
        st.stack = None
        st.renamed = True
        if not self.cfg.verify:
            self._finish(st)
            return
        grid = grid_of(st.header)
        # row bands of >= 8 tile rows: a band re-decodes one tile row at each of its edges
        bands = grid.row_bands(max(1, grid.rows // 8))
        st.bands_todo = len(bands)
        ltcs = str(self.out_dir / st.scene.out)
        for b, rows in enumerate(bands):
            self.push("verify", st.index, (st.scene, ltcs, rows), sub=b)

    def _on_verify(self, st: _State, item: _Item, result: dict[str, Any]) -> None:
        from pipeline.scenes.verify import BandErrors

        errors = BandErrors.from_dict(result["errors"])
        st.errors = errors if st.errors is None else st.errors.merge(errors)
        st.verify_s += result["seconds"]
        st.bands_todo -= 1
        if st.bands_todo == 0:
            self._finish(st)

    def _finish(self, st: _State) -> None:
        h = st.header
        out = self.out_dir / st.scene.out
        size = out.stat().st_size
        row: dict[str, Any] = {
            "scene": st.scene.key,
            "status": "done",
            "output": st.scene.out,
            "width": h.width,
            "height": h.height,
            "bands": h.count,
            "dtype": h.dtype,
            "tiles": sum(len(c) for c in st.chunks),
            "bytes": size,
            "bpp": round(8.0 * size / (h.width * h.height), 5),
            "psnr_db": None,
            "psnr_min_db": None,
            "psnr_peak": None,
            "seconds": round(time.perf_counter() - st.t0, 3),
            "encode_seconds": round(st.encode_s, 3),
            "verify_seconds": round(st.verify_s, 3),
            "source_sha256": h.source.sha256,
            "output_sha256": file_sha256(out),
            "error": None,
        }
        if st.errors is not None:
            row.update(_psnr_fields(st.errors, h.dtype))
        self.rows[st.index] = row
        record = {
            "scene": st.scene.key,
            "fingerprint": self.fp,
            "source_sha256": row["source_sha256"],
            "output_sha256": row["output_sha256"],
            "row": row,
        }
        atomic_write_text(_record_path(self.out_dir, st.scene), json.dumps(record, indent=1))


def _describe_error(exc: BaseException) -> str:
    """One line: the exception and the causes it was raised from (GDAL's real reason is often
    in the cause: "Read failed" <- "TIFFReadEncodedStrip() failed")."""
    from ray.exceptions import RayActorError

    if isinstance(exc, RayActorError):
        return "the worker process died twice on this scene (out of memory? a GDAL crash?)"
    if isinstance(exc, SceneTaskError):
        return str(exc)
    parts: list[str] = []
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        line = (str(e).strip().splitlines() or [""])[0]
        text = f"{type(e).__name__}: {line}" if line else type(e).__name__
        if text not in parts:
            parts.append(text)
        e = e.__cause__ or e.__context__
    return " <- ".join(parts)


def _failed_row(name: str, reason: str, seconds: float | None = None) -> dict[str, Any]:
    row = dict.fromkeys(REPORT_FIELDS)
    row.update(scene=name, status="failed", error=reason, seconds=seconds and round(seconds, 3))
    return row


def _write_report(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    def cell(v: Any) -> Any:
        if isinstance(v, list):
            return ";".join("" if x is None else str(x) for x in v)
        return "" if v is None else v

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=REPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: cell(r.get(k)) for k in REPORT_FIELDS})
    atomic_write_text(out_dir / "report.csv", buf.getvalue())

    def jsonable(v: Any) -> Any:
        if isinstance(v, float) and math.isinf(v):
            return "inf"
        if isinstance(v, list):
            return [jsonable(x) for x in v]
        return v

    data = [{k: jsonable(r.get(k)) for k in REPORT_FIELDS} for r in rows]
    atomic_write_text(out_dir / "report.json", json.dumps(data, indent=1))


def _summary(result: CompressResult) -> str:
    done = [r for r in result.rows if r["status"] == "done"]
    skipped = [r for r in result.rows if r["status"] == "skipped"]
    lines = [
        f"{len(done)} scenes compressed, {len(skipped)} unchanged and skipped, "
        f"{len(result.failed)} failed, in {result.seconds:.1f} s -> {result.out_dir}"
    ]
    for r in done:
        psnr = "" if r["psnr_min_db"] is None else f", PSNR min {r['psnr_min_db']} dB"
        lines.append(f"  {r['scene']}: {r['bytes']} bytes, {r['bpp']} bpp{psnr}")
    for r in result.failed:
        lines.append(f"  FAILED {r['scene']}: {r['error']}")
    lines.append(f"report: {result.out_dir / 'report.csv'}, {result.out_dir / 'report.json'}")
    return "\n".join(lines)


def _band_groups(text: str) -> list[list[int]]:
    try:
        return [[int(b) for b in g.split(",")] for g in text.split(";") if g.strip()]
    except ValueError:
        raise ValueError(f"--bands expects groups like '3,2,1;4', got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ltchm compress-scenes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT",
        help="GeoTIFFs, folders or zip/tar archives of them",
    )  # fmt: skip
    parser.add_argument(
        "--model", required=True, metavar="SPEC",
        help="checkpoint, MLflow URI (models:/name@alias) or registry name",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--config", help="YAML: scenes section; model section for a registry name")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile-size", type=int, default=None)
    parser.add_argument("--overlap", type=int, default=None)
    parser.add_argument("--bit-mapping", choices=("scene-linear", "tile-linear"), default=None)
    parser.add_argument("--bands", default=None, help="band groups, e.g. '3,2,1;4' (1-based)")
    parser.add_argument("--chunk-tiles", type=int, default=None, help="tiles per task")
    parser.add_argument("--workers", type=int, default=None, help="Ray workers")
    parser.add_argument("--cpus-per-worker", type=int, default=None)
    parser.add_argument("--no-verify", action="store_true", help="skip the decode + PSNR pass")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS)")
    parser.add_argument("--local", action="store_true", help="no Ray: run in this process")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    prog = "ltchm compress-scenes"
    try:
        overrides = {
            "scenes.tile_size": args.tile_size,
            "scenes.overlap": args.overlap,
            "scenes.bit_mapping": args.bit_mapping,
            "scenes.band_groups": _band_groups(args.bands) if args.bands else None,
            "scenes.chunk_tiles": args.chunk_tiles,
            "scenes.workers": args.workers,
            "scenes.cpus_per_worker": args.cpus_per_worker,
            "scenes.verify": False if args.no_verify else None,
        }
        cfg = load_config(args.config, overrides).scenes
        result = compress_scenes(
            args.inputs,
            args.out,
            args.model,
            cfg,
            config=args.config,
            device=args.device,
            address=args.address,
            use_ray=not args.local,
            progress=not args.no_progress,
        )
    except (ConfigError, OutputDirError, ValueError, FileNotFoundError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(_summary(result))
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
