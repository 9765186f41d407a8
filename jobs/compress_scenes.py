"""``ltchm compress-scenes``: batch-compress georeferenced scenes into ``.ltcs`` files, on Ray.

    ltchm compress-scenes scenes/ archive.zip one.tif --out out/ \\
        --model models:/ltchm-lambda512@champion
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
Output: ``<out>/<name>.ltcs`` for a GeoTIFF given as a file, ``<out>/<folder or archive
name>/<path inside it>.ltcs`` for the scenes of a folder or archive; ``report.csv``,
``report.json`` and ``.compress_scenes/`` (one record per finished scene). Exit status 1 if
any scene failed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from jobs.output_lock import OutputDirError, locked_output
from jobs.ray_cluster import ray_session
from ltchm.atomic import check_output_dir
from ltchm.cli_options import (
    add_address,
    add_config,
    add_device,
    add_model,
    add_progress,
    add_tracking_uri,
    config_default,
)
from ltchm.config import ConfigError, ScenesConfig, load_config
from pipeline.remote import is_url, storage_env
from pipeline.scenes.inputs import Scene, list_scenes
from pipeline.scenes.report import CompressResult, failed_row, summary, write_report
from pipeline.scenes.resume import STATE_DIR, clear_temps, fingerprint, load_record
from pipeline.scenes.scheduler import LocalPool, Outcome, Pool, SceneBatch, WorkItem

__all__ = ["CompressResult", "OutputDirError", "Scene", "compress_scenes", "list_scenes", "main"]


# -- the pool of Ray actors --------------------------------------------------------------------
class RayPool:
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
        self.in_flight: dict[Any, tuple[int, WorkItem]] = {}

    def free_slots(self) -> int:
        return sum(self.depth - n for n in self.load.values())

    def submit(self, item: WorkItem) -> None:
        i = min(self.load, key=lambda k: self.load[k])
        ref = getattr(self.actors[i], item.kind).remote(*item.args)
        self.load[i] += 1
        self.in_flight[ref] = (i, item)

    def busy(self) -> bool:
        return bool(self.in_flight)

    def next(self) -> Outcome:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        from pipeline.scenes.worker import WorkerDied

        [ref], _ = ray.wait(list(self.in_flight), num_returns=1)
        i, item = self.in_flight.pop(ref)
        self.load[i] -= 1
        try:
            return item, ray.get(ref), None, False
        except RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return item, None, cause, False
        except RayActorError as exc:  # the worker process died: retry the item elsewhere
            return item, None, WorkerDied(str(exc)), True


# -- the job ------------------------------------------------------------------------------------
def compress_scenes(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    model: str,
    cfg: ScenesConfig,
    *,
    config: str | Path | None = None,
    device: str = "cpu",
    address: str | None = None,
    use_ray: bool = True,
    progress: bool = True,
    tracking_uri: str | None = None,
) -> CompressResult:
    """Compress every scene of ``inputs`` into ``out_dir``; see the module docstring.

    Args:
        model: a model SPEC (checkpoint, ``models:/name@alias``, registry name); with a
            target (``cfg.target_psnr`` / ``cfg.target_bpp``) a family SPEC
            (:func:`pipeline.scenes.targets.resolve_family`).
        config: config file for a registry-name SPEC (its ``model`` section).
        use_ray: False runs everything in this process (debugging, the benchmark baseline).
        tracking_uri: the MLflow store of a ``models:/`` SPEC.

    Raises:
        OutputDirError: another job holds ``out_dir``. ValueError / ConfigError: bad model.
    """
    from tqdm.auto import tqdm

    from ltchm.codec.spec import load_model, spec_source
    from ltchm.codec.store import store_model
    from pipeline.scenes.tiles import TileCoder
    from pipeline.scenes.worker import SceneWorker, family_hash

    t_start = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    check_output_dir(out_dir, *inputs)
    scenes, bad = list_scenes(inputs)
    if not scenes:  # before loading a model (seconds) or starting Ray
        why = "; ".join(r if n in r else f"{n}: {r}" for n, r in bad[:3])
        raise ValueError(f"no scene to compress: {why or 'no raster in the inputs'}")
    # The driver loads the model once: a bad SPEC fails here, before any cluster work, and the
    # local store gets a copy so that 'ltchm decompress-scene' needs no --model.
    if tracking_uri is not None:  # the workers resolve the SPEC in the same store
        from ltchm.tracking import resolve_tracking_uri

        tracking_uri = resolve_tracking_uri(tracking_uri)
    source = spec_source(model, tracking_uri)
    sources: list[str | None] = []
    driver_coder: Any
    if cfg.target_psnr is None and cfg.target_bpp is None:
        driver_coder = TileCoder(load_model(model, config, device, tracking_uri), device)
        store_model(driver_coder.model, driver_coder.identity.weights_hash)
    else:  # a family of rate points: each in the store, so that decoding finds each one
        from pipeline.scenes.targets import FamilyCoder, resolve_family

        specs = resolve_family(model, tracking_uri)
        coders = [TileCoder(load_model(s, config, device, tracking_uri), device) for s in specs]
        for c in coders:
            store_model(c.model, c.identity.weights_hash)
        sources = [spec_source(s, tracking_uri) for s in specs]
        driver_coder = FamilyCoder(coders, cfg.target_psnr, cfg.target_bpp)
    weights = family_hash(driver_coder)
    fp = fingerprint(cfg, weights)
    out_dir.mkdir(parents=True, exist_ok=True)
    with locked_output(out_dir, STATE_DIR, "compress-scenes"):
        clear_temps(out_dir)
        records = {i: load_record(out_dir, s, fp) for i, s in enumerate(scenes)}
        with contextlib.ExitStack() as stack:
            if use_ray:
                remote = any(is_url(s.member.source) for s in scenes)
                pool: Pool = stack.enter_context(
                    _pool_ray(model, config, device, cfg, address, tracking_uri, source, remote)
                )
                hashes = _actor_hashes(cast(RayPool, pool))
                if any(h != weights for h in hashes):
                    raise ValueError(
                        f"the Ray workers loaded other weights for {model!r} than this process "
                        "(a checkpoint that differs between nodes?)"
                    )
            else:
                pool = LocalPool(SceneWorker.from_coder(driver_coder, cfg, source, sources))
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
            rows = SceneBatch(pool, scenes, records, out_dir, cfg, fp, bar).run()
    ordered = [rows[i] for i in range(len(scenes))]
    ordered += [failed_row(name, reason) for name, reason in bad]
    write_report(out_dir, ordered)
    return CompressResult(ordered, out_dir, time.perf_counter() - t_start)


@contextlib.contextmanager
def _pool_ray(
    model: str,
    config: str | Path | None,
    device: str,
    cfg: ScenesConfig,
    address: str | None,
    tracking_uri: str | None,
    source: str,
    remote_inputs: bool = False,
) -> Iterator[RayPool]:
    import ray

    with ray_session(address):
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = cfg.workers or max(1, cpus // cfg.cpus_per_worker)
        gpus = 1 if device.startswith("cuda") else 0
        from pipeline.scenes.worker import SceneWorker

        # workers read URLs with the driver's object-storage settings
        env = {"runtime_env": {"env_vars": storage_env()}} if remote_inputs else {}
        actor_cls = ray.remote(SceneWorker).options(
            num_cpus=cfg.cpus_per_worker,
            num_gpus=gpus,
            max_restarts=-1,
            max_task_retries=0,
            **env,
        )
        actors = [
            actor_cls.remote(
                model,
                config,
                device,
                cfg.cpus_per_worker,
                cfg.model_dump_json(),
                tracking_uri,
                source,
            )
            for _ in range(workers)
        ]
        try:
            yield RayPool(actors)
        finally:
            for a in actors:
                ray.kill(cast(Any, a))


def _actor_hashes(pool: RayPool) -> list[str]:
    import ray

    return ray.get([a.weights_hash.remote() for a in pool.actors])


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
        "inputs", nargs="+", metavar="INPUT",
        help="GeoTIFFs, folders or zip/tar archives of them; local paths or URLs (s3://, "
        "gs://, https://)",
    )  # fmt: skip
    add_model(parser)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    add_config(parser, help="YAML: scenes section; model section for a registry name")
    add_device(parser)
    parser.add_argument(
        "--tile-size",
        type=int,
        help=f"tile side in pixels, a multiple of 64 {config_default('scenes.tile_size')}",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        help=f"pixels shared by neighbouring tiles {config_default('scenes.overlap')}",
    )
    parser.add_argument(
        "--bit-mapping",
        choices=("scene-linear", "tile-linear"),
        help="how more than 8 bits map to the codec's range: one range per scene or per "
        f"tile {config_default('scenes.bit_mapping')}",
    )
    parser.add_argument(
        "--bands",
        help="band groups coded as 3-channel images, e.g. '3,2,1;4' (1-based; default: "
        "R,G,B by colour interpretation, then the rest in threes)",
    )
    parser.add_argument(
        "--chunk-tiles", type=int, help=f"tiles per task {config_default('scenes.chunk_tiles')}"
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="Ray workers (default: the cluster's CPUs / --cpus-per-worker)",
    )
    parser.add_argument(
        "--cpus-per-worker",
        type=int,
        help=f"torch threads per worker {config_default('scenes.cpus_per_worker')}",
    )
    parser.add_argument(
        "--max-error",
        type=float,
        metavar="E",
        help="bound every valid pixel within E of its source, per band, in native units "
        "(0: lossless): the learned decode's residual, quantised with step 2E+1, coded "
        "losslessly, checked on decode",
    )
    parser.add_argument(
        "--psnr-floor",
        type=float,
        metavar="DB",
        help="apply the error-bounded layer only to the tiles and bands whose PSNR (native "
        "range) falls below DB; its E: --max-error, else the largest E that guarantees DB",
    )
    parser.add_argument(
        "--target-psnr",
        type=float,
        metavar="DB",
        help="per tile, the rate point of the --model family (models:/ltchm-lambda*@ALIAS, "
        "pretrained:SET, or specs joined by commas) giving every band DB in its native "
        "range with the fewest bytes",
    )
    parser.add_argument(
        "--target-bpp",
        type=float,
        metavar="B",
        help="per tile, the best rate point of the --model family that fits B bits per pixel",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the decode + PSNR pass")
    add_address(parser)
    add_tracking_uri(parser)
    parser.add_argument("--local", action="store_true", help="no Ray: run in this process")
    add_progress(parser)
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
            "scenes.max_error": args.max_error,
            "scenes.psnr_floor": args.psnr_floor,
            "scenes.target_psnr": args.target_psnr,
            "scenes.target_bpp": args.target_bpp,
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
            tracking_uri=args.tracking_uri,
        )
    except (ConfigError, OutputDirError, ValueError, FileNotFoundError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
