"""The scene worker: holds a model and plans, encodes and verifies pieces of scenes.

In a batch each worker is a Ray actor (:mod:`jobs.compress_scenes`) or, with ``--local``,
an object in the driver's process; either way the scheduler calls the same three methods.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ltchm.config import ScenesConfig
from pipeline.archives import file_sha256, member_sha256
from pipeline.scenes.inputs import Scene

if TYPE_CHECKING:
    from pipeline.scenes.tiles import TileCoder

__all__ = ["SceneTaskError", "SceneWorker", "WorkerDied", "describe_error", "family_hash"]

F = TypeVar("F", bound=Callable[..., Any])


def family_hash(coder: Any) -> str:
    """The weights hash of a coder, or of a family's rate points together."""
    coders = getattr(coder, "coders", None)
    if coders is None:
        return str(coder.identity.weights_hash)
    return "+".join(c.identity.weights_hash for c in coders)


class SceneTaskError(RuntimeError):
    """A task's failure, described where it happened (Ray does not carry exception chains)."""


class WorkerDied(RuntimeError):
    """The process running a task died (the pool retries the task once elsewhere)."""


def describe_error(exc: BaseException) -> str:
    """One line: the exception and the causes it was raised from (GDAL's real reason is often
    in the cause: "Read failed" <- "TIFFReadEncodedStrip() failed")."""
    if isinstance(exc, WorkerDied):
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


def _described(method: F) -> F:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            raise SceneTaskError(describe_error(exc)) from None

    return wrapper  # type: ignore[return-value]


class SceneWorker:
    """Holds the model; plans, encodes and verifies pieces of scenes."""

    def __init__(
        self,
        spec: str,
        config: str | Path | None,
        device: str,
        threads: int,
        cfg_json: str,
        tracking_uri: str | None = None,
        source: str | None = None,
    ) -> None:
        import warnings

        import torch

        from ltchm.codec.spec import load_model
        from ltchm.runtime import tune_allocator
        from pipeline.scenes.tiles import TileCoder

        tune_allocator()
        torch.set_num_threads(threads)
        self.cfg = ScenesConfig.model_validate_json(cfg_json)
        self.source = source
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # untrained registry models: once
            if self.cfg.target_psnr is None and self.cfg.target_bpp is None:
                self.coder = TileCoder(load_model(spec, config, device, tracking_uri), device)
                return
            from ltchm.codec.spec import spec_source
            from pipeline.scenes.targets import FamilyCoder, resolve_family

            specs = resolve_family(spec, tracking_uri)  # the family, loaded once per worker
            coders = [TileCoder(load_model(s, config, device, tracking_uri), device) for s in specs]
            self.coder = FamilyCoder(coders, self.cfg.target_psnr, self.cfg.target_bpp)
            self.sources = [spec_source(s, tracking_uri) for s in specs]

    sources: list[str | None]
    coder: Any  # a TileCoder, or a FamilyCoder with a target

    @classmethod
    def from_coder(
        cls,
        coder: TileCoder | Any,
        cfg: ScenesConfig,
        source: str | None = None,
        sources: list[str | None] | None = None,
    ) -> SceneWorker:
        """A worker around a loaded model or family (the in-process pool)."""
        worker = cls.__new__(cls)
        worker.coder, worker.cfg, worker.source = coder, cfg, source
        worker.sources = sources or []
        return worker

    def weights_hash(self) -> str:
        return family_hash(self.coder)

    @_described
    def plan(self, scene: Scene, resume: dict[str, Any] | None, out_dir: str) -> dict[str, Any]:
        """Checksum, description and bit-depth statistics; ``resumed`` if the record holds."""
        from pipeline.scenes.encode import plan_scene
        from pipeline.scenes.targets import FamilyCoder

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
            size=scene.member.size,
            context=getattr(self.coder.model, "context", None),
            source=self.source,
            family=(
                self.coder.infos(None, self.sources)
                if isinstance(self.coder, FamilyCoder)
                else None
            ),
        )
        return {"header": header.model_dump_json(), "seconds": time.perf_counter() - t0}

    @_described
    def encode(self, scene: Scene, header_json: str, indices: list[int]) -> dict[str, Any]:
        """The tile records of ``indices`` (read with rasterio windows)."""
        from pipeline.scenes.container import SceneHeader
        from pipeline.scenes.encode import encode_tiles

        t0 = time.perf_counter()
        header = SceneHeader.model_validate_json(header_json)
        notes = getattr(self.coder, "notes", None)
        if notes is not None:
            notes.clear()
        records = encode_tiles(scene.gdal_path, header, indices, self.coder)
        out = {"records": records, "seconds": time.perf_counter() - t0}
        if notes is not None:  # each tile's rate point and whether it met the target
            out["tiles"] = list(notes)
        return out

    @_described
    def verify(self, scene: Scene, ltcs: str, rows: tuple[int, int]) -> dict[str, Any]:
        """Decode rows ``rows`` of the written file and compare them with the source."""
        from rasterio.windows import Window

        from pipeline.scenes.container import SceneReader
        from pipeline.scenes.mosaic import SceneDecoder
        from pipeline.scenes.verify import window_errors

        t0 = time.perf_counter()
        with SceneReader(ltcs) as reader:
            decoder = SceneDecoder(reader, self.coder)
            w = Window(0, rows[0], reader.header.width, rows[1] - rows[0])
            errors = window_errors(decoder, scene.gdal_path, w)
        return {"errors": errors.to_dict(), "seconds": time.perf_counter() - t0}
