"""The batch's driver loop: hands work to a pool by priority, writes files, finishes scenes.

Three kinds of task per scene, found as the work goes: *plan* (one per scene), *encode*
(``chunk_tiles`` tiles each, once the scene is planned) and *verify* (row bands, once its
file is written). Started scenes are finished before more are planned, so files complete
early and memory stays bounded. The driver writes each ``.ltcs`` as its tiles come back, in
raster order, to a temporary name renamed when complete.

A pool runs tasks: :class:`LocalPool` in this process (``--local``, the tests), or the Ray
actors of :mod:`jobs.compress_scenes`. A task whose process died is retried once.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ltchm.atomic import atomic_path
from ltchm.config import ScenesConfig
from pipeline.archives import file_sha256
from pipeline.scenes.inputs import Scene
from pipeline.scenes.report import failed_row, psnr_fields
from pipeline.scenes.resume import write_record
from pipeline.scenes.worker import SceneWorker, describe_error

__all__ = ["LocalPool", "Pool", "SceneBatch", "WorkItem"]

_RANK = {"verify": 0, "encode": 1, "plan": 2}  # finish started scenes before planning more


@dataclass(order=True)
class WorkItem:
    """One task: a worker method and its arguments, ordered by ``priority``."""

    priority: tuple[int, ...]
    kind: str = field(compare=False)  # "plan" | "encode" | "verify"
    scene: int = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)
    attempts: int = field(default=0, compare=False)


# (item, result, exception, retry): retry is True when the process running it died
Outcome = tuple[WorkItem, Any, BaseException | None, bool]


class Pool(Protocol):
    """Runs work items; :class:`SceneBatch` submits while there are free slots."""

    def free_slots(self) -> int: ...

    def submit(self, item: WorkItem) -> None: ...

    def busy(self) -> bool: ...

    def next(self) -> Outcome: ...


class LocalPool:
    """Runs items in this process, one at a time (``--local``: no Ray)."""

    def __init__(self, worker: SceneWorker) -> None:
        self.worker = worker
        self._done: list[tuple[WorkItem, Any, BaseException | None]] = []

    def free_slots(self) -> int:
        return 0 if self._done else 1

    def submit(self, item: WorkItem) -> None:
        try:
            self._done.append((item, getattr(self.worker, item.kind)(*item.args), None))
        except Exception as exc:
            self._done.append((item, None, exc))

    def busy(self) -> bool:
        return bool(self._done)

    def next(self) -> Outcome:
        item, result, exc = self._done.pop(0)
        return item, result, exc, False


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
    residual_tiles: list[int] = field(default_factory=list)  # per band: tiles with a residual
    notes: list[dict[str, Any]] = field(default_factory=list)  # targets: each tile's choice
    failed: bool = False
    renamed: bool = False  # the complete file is in place (verification may still fail)


class SceneBatch:
    """Compresses ``scenes`` into ``out_dir`` through ``pool``; :meth:`run` returns the rows.

    ``records`` holds each scene's resume record (or None); ``fp`` is the fingerprint new
    records are written under; ``bar`` is a tqdm-like progress bar counting tiles.
    """

    def __init__(
        self,
        pool: Pool,
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
        self._heap: list[WorkItem] = []
        self._counter = itertools.count()

    def push(self, kind: str, s: int, args: tuple[Any, ...], sub: int = 0) -> None:
        prio = (s, _RANK[kind], sub, next(self._counter))
        heapq.heappush(self._heap, WorkItem(prio, kind, s, args))

    def run(self) -> dict[int, dict[str, Any]]:
        """Work until every scene is done, skipped or failed; one row per scene index."""
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
        msg = describe_error(exc)
        if st.stack is not None:  # not renamed yet: close and remove the temporary file
            with contextlib.suppress(Exception):
                st.writer.abort()
            st.stack.__exit__(type(exc), exc, None)
            st.stack = None
        elif st.renamed:  # written but failed its verification: removed
            (self.out_dir / st.scene.out).unlink(missing_ok=True)
        self.rows[st.index] = failed_row(st.scene.key, msg, time.perf_counter() - st.t0)
        failed = sum(r["status"] == "failed" for r in self.rows.values())
        self.bar.set_postfix(failed=failed, refresh=False)

    def _on_plan(self, st: _State, item: WorkItem, result: dict[str, Any]) -> None:
        from pipeline.scenes.container import SceneHeader, SceneWriter
        from pipeline.scenes.mosaic import grid_of

        if result.get("resumed"):
            record = self.records[st.index]
            assert record is not None
            self.rows[st.index] = {**record["row"], "status": "skipped", "error": None}
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

    def _on_encode(self, st: _State, item: WorkItem, result: dict[str, Any]) -> None:
        from pipeline.scenes.mosaic import grid_of

        st.ready[item.priority[2]] = result["records"]
        st.notes.extend(result.get("tiles", []))
        st.encode_s += result["seconds"]
        self.bar.update(len(result["records"]))
        while st.next_chunk in st.ready:  # tiles go into the file in raster order
            for rec in st.ready.pop(st.next_chunk):
                st.writer.add(rec)
                self._count(st, rec)
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

    def _count(self, st: _State, rec: bytes) -> None:
        """Tally what a tile record holds for the report (its header only is parsed)."""
        from pipeline.scenes.container import unpack_tile

        h = st.header
        if h.error is None:
            return
        if not st.residual_tiles:
            st.residual_tiles = [0] * h.count
        for c, r in enumerate(unpack_tile(rec).residuals or []):
            if r:
                st.residual_tiles[h.coded_bands[c] - 1] += 1

    def _on_verify(self, st: _State, item: WorkItem, result: dict[str, Any]) -> None:
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
        if h.error is not None:
            row.update(
                max_error=h.error.max_error,
                psnr_floor=h.error.psnr_floor,
                residual_tiles=st.residual_tiles,
            )
        if st.errors is not None:
            row.update(psnr_fields(st.errors, h.dtype))
            _check_bound(h, st.errors)
        if self.cfg.target_psnr is not None or self.cfg.target_bpp is not None:
            row.update(_target_fields(self.cfg, row, st.notes))
        self.rows[st.index] = row
        write_record(self.out_dir, st.scene, self.fp, row)


def _check_bound(header: Any, errors: Any) -> None:
    """A scene coded within ``max_error`` everywhere must verify within it: raise if not
    (the scene then fails and its file is removed; never reported as done)."""
    err = header.error
    if err is None or err.max_error is None or err.psnr_floor is not None:
        return
    bound = err.max_error if header.dtype.startswith("float") else int(err.max_error)
    for b in header.coded_bands:
        if errors.count[b - 1] and errors.max_abs[b - 1] > bound:
            raise ValueError(
                f"band {b} decodes {errors.max_abs[b - 1]} off its source, over the bound "
                f"{err.max_error}: the file was removed"
            )


def _target_fields(cfg: ScenesConfig, row: dict[str, Any], notes: list[dict[str, Any]]) -> dict:
    """Target and achieved values of a scene: per band for a PSNR, for the scene for a rate;
    the rate point each tile took, and the tiles no rate point met (the error-bounded
    layer took those over; otherwise the scene would have failed)."""
    models: dict[str, int] = {}
    for n in notes:
        key = "?" if n["model"] is None else f"{n['model']:g}"
        models[key] = models.get(key, 0) + 1
    unmet = sorted(n["tile"] for n in notes if not n["met"])
    out: dict[str, Any] = {
        "target_psnr": cfg.target_psnr,
        "target_bpp": cfg.target_bpp,
        "tile_models": [f"{k}:{v}" for k, v in sorted(models.items())],
        "unmet_tiles": unmet,
    }
    if cfg.target_psnr is not None and row.get("psnr_db") is not None:
        out["target_met"] = [None if p is None else p >= cfg.target_psnr for p in row["psnr_db"]]
    elif cfg.target_bpp is not None:
        out["target_met"] = [row["bpp"] <= cfg.target_bpp]
    return out
