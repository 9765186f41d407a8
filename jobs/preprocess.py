"""``ltchm preprocess``: raw DOTA / UC-Merced / Gaofen archives -> WebDataset shards, on Ray.

    ltchm preprocess part1.zip part2.zip UCMerced_LandUse.zip scenes/ --out shards/
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m jobs.preprocess /data/part1.zip --out /data/shards

The driver lists the archives and plans every shard (:mod:`pipeline.plan`); Ray Data then
runs one task per shard (:func:`pipeline.shards.build_shard`) across the cluster; the
manifest is written last. Without ``--address`` or ``RAY_ADDRESS`` a local Ray is started;
under ``ray job submit`` the job joins that cluster. Inputs and ``--out`` must be paths every
node sees (shared storage); give absolute paths under ``ray job submit``, whose working
directory is a copy.

Re-running with the same inputs and config resumes: finished shards are verified by sha256
and kept, the rest are written. Output: ``{split}-NNNNNN.tar`` and ``manifest.json`` in
``--out``, plus ``.preprocess/`` (the plan and one record per finished shard).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from jobs.output_lock import OutputDirError, locked_output
from jobs.ray_cluster import ray_session
from ltchm.atomic import atomic_write_text, check_output_dir
from ltchm.cli_options import (
    add_address,
    add_config,
    add_overwrite,
    add_progress,
    config_default,
)
from ltchm.config import ConfigError, PreprocessConfig, load_config
from pipeline.archives import LAYOUTS, ArchiveError
from pipeline.plan import Plan, ShardPlan, config_dict, make_plan
from pipeline.shards import (
    MANIFEST,
    PHASES,
    SHARD_PATTERN,
    STATE_DIR,
    build_manifest,
    build_shard,
)

__all__ = ["OutputDirError", "PreprocessResult", "main", "preprocess"]

_TEMP = re.compile(r"^\.((train|val|test)-\d{6}\.tar|manifest\.json)\..+")


@dataclass
class PreprocessResult:
    manifest: dict[str, Any]
    records: list[dict[str, Any]]
    out_dir: Path
    seconds: float

    @property
    def reused(self) -> int:
        return sum(1 for r in self.records if r.get("reused"))

    def timings(self) -> dict[str, float]:
        """Seconds per phase summed over all shard tasks (decode, tile, encode, write)."""
        return {p: sum(r["timings"][p] for r in self.records) for p in PHASES}

    def summary(self) -> str:
        """What the job wrote, as the command prints it."""
        m = self.manifest
        lines = [f"Wrote {len(m['shards'])} shards to {self.out_dir} in {self.seconds:.1f} s"]
        if self.reused:
            lines[0] += f" ({self.reused} already complete, verified and kept)"
        lines.append("")
        lines.append(f"{'split':<6} {'dataset':<10} {'images':>7} {'samples':>8}")
        for split, per in m["counts"].items():
            for dataset, c in per.items():
                lines.append(f"{split:<6} {dataset:<10} {c['images']:>7} {c['samples']:>8}")
        lines.append("")
        skipped_tiles = ", ".join(f"{k} {v}" for k, v in m["tiles_skipped"].items()) or "none"
        lines.append(f"skipped members/images: {len(m['skipped'])}; skipped tiles: {skipped_tiles}")
        if m["padded_images"]:
            lines.append(f"padded images (smaller than a tile): {m['padded_images']}")
        for note, n in m["conversions"].items():
            lines.append(f"converted: {note}: {n}")
        for src in m["sources"]:
            for note in src["notes"]:
                lines.append(f"warning: {src['name']}: {note}")
        size = sum(s["bytes"] for s in m["shards"])
        lines.append(f"total {size / 1e6:.1f} MB; manifest: {self.out_dir / MANIFEST}")
        return "\n".join(lines)


def _prepare_out(out_dir: Path, plan: Plan, overwrite: bool) -> None:
    """Check that ``out_dir`` is empty or holds this plan's shards; clear leftovers.

    A manifest of the same plan is kept: it describes exactly the shards a resumed run ends
    with, so a verified re-run of a finished job never leaves the folder without one.
    """
    state = out_dir / STATE_DIR
    plan_file = state / "plan.json"
    ours = [p for p in out_dir.iterdir() if SHARD_PATTERN.match(p.name) or p.name == MANIFEST]
    previous = None
    if plan_file.is_file():
        previous = json.loads(plan_file.read_text()).get("fingerprint")
    if ours and previous != plan.fingerprint:
        if not overwrite:
            raise OutputDirError(
                f"{out_dir} holds shards of another job (different inputs or config); "
                "pass --overwrite to replace them, or choose another --out"
            )
        for p in ours:
            p.unlink()
        for p in state.glob("*.json"):
            p.unlink()
    _clear_temps(out_dir)
    record = {"fingerprint": plan.fingerprint, "config": config_dict(plan.config)}
    atomic_write_text(plan_file, json.dumps(record, indent=1))


def _clear_temps(out_dir: Path) -> None:
    """Delete temporary files of killed writers (never complete, never renamed).

    Only safe while no task of this job is running: at the start, and after the last one.
    """
    state = out_dir / STATE_DIR
    for folder in (out_dir, state):
        for p in folder.iterdir():
            if _TEMP.match(p.name) or (folder == state and p.name.startswith(".")):
                p.unlink(missing_ok=True)


def _build_row(row: dict[str, Any], out_dir: str, config: str) -> dict[str, Any]:
    """Ray Data map function: one shard plan in, its record out (both as JSON text)."""
    cfg = PreprocessConfig.model_validate_json(config)
    record = build_shard(ShardPlan.from_json(row["plan"]), out_dir, cfg)
    return {"name": row["name"], "record": json.dumps(record)}


@contextlib.contextmanager
def _data_context(**settings: Any) -> Iterator[None]:
    """Ray Data settings for this job only (the context is process-wide)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    old = {k: getattr(ctx, k) for k in settings}
    for k, v in settings.items():
        setattr(ctx, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(ctx, k, v)


def _run_ray(
    plan: Plan,
    out_dir: Path,
    workers: int | None,
    address: str | None,
    progress: Any,
) -> list[dict[str, Any]]:
    import ray
    import ray.data

    rows = [{"name": s.name, "plan": s.to_json()} for s in plan.shards]
    with (
        ray_session(address),
        _data_context(
            enable_progress_bars=False,  # one bar, ours, counts shards and samples
            print_on_execution_start=False,
            # Reservation keeps a share of the CPUs per operator for multi-stage pipelines; this
            # one has a single stage, and with it the second task waited for the first to end
            # (benchmarks/RESULTS.md, "Implementation choices").
            op_resource_reservation_enabled=False,
        ),
    ):
        items = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = items.map(
            cast(Any, _build_row),
            fn_kwargs={"out_dir": str(out_dir), "config": plan.config.model_dump_json()},
            compute=ray.data.TaskPoolStrategy(size=workers),
            # Ray Data retries a task whose worker died (without limit); the shard is then
            # written again from scratch under a new temporary name.
            num_cpus=1,
            **_storage_args(plan),
        )
        records = []
        samples = 0
        for row in ds.iter_rows():
            records.append(json.loads(row["record"]))
            samples += records[-1]["samples"]
            progress.update(1)
            progress.set_postfix(samples=samples, refresh=False)
    return records


def _storage_args(plan: Plan) -> dict[str, Any]:
    """Ray task options that let workers read the plan's URLs as the driver does."""
    from pipeline.remote import is_url, storage_env

    if not any(is_url(e.member.source) for shard in plan.shards for e in shard.images):
        return {}
    return {"runtime_env": {"env_vars": storage_env()}}


def _run_local(plan: Plan, out_dir: Path, progress: Any) -> list[dict[str, Any]]:
    records = []
    for shard in plan.shards:
        records.append(build_shard(shard, out_dir, plan.config))
        progress.update(1)
    return records


def preprocess(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    cfg: PreprocessConfig,
    *,
    workers: int | None = None,
    address: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    use_ray: bool = True,
) -> PreprocessResult:
    """Plan, write the shards in parallel on Ray (or in this process), write the manifest.

    Args:
        inputs: archives (zip/tar), folders or image files.
        out_dir: output folder (created).
        cfg: the ``preprocess`` config section.
        workers: shard tasks in flight; None: as many as the cluster's CPUs allow.
        address: Ray cluster address; None: ``RAY_ADDRESS`` or a new local Ray. Ignored when
            Ray is already initialised in this process.
        overwrite: replace shards of a different plan found in ``out_dir``.
        use_ray: False runs every shard in this process, one after the other (the baseline
            the benchmark compares against).

    Raises:
        ArchiveError: an input cannot be used. OutputDirError: ``out_dir`` is taken.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    check_output_dir(out_dir, *inputs, clears=True)
    plan = make_plan(inputs, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    with locked_output(out_dir, STATE_DIR, "preprocess"):
        _prepare_out(out_dir, plan, overwrite)
        bar = tqdm(
            total=len(plan.shards),
            unit="shard",
            desc="preprocess",
            disable=not progress,
            dynamic_ncols=True,
            # In a log (ray job submit, batch systems) a line every 30 s, not every shard.
            mininterval=0.1 if sys.stderr.isatty() else 30.0,
        )
        with bar:
            if use_ray:
                records = _run_ray(plan, out_dir, workers, address, bar)
            else:
                records = _run_local(plan, out_dir, bar)
        # A worker killed mid-shard leaves its temporary file; Ray rewrote the shard elsewhere.
        _clear_temps(out_dir)
        manifest = build_manifest(plan, records)
        atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return PreprocessResult(manifest, records, out_dir, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ltchm preprocess",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="ARCHIVE_OR_DIR",
        help="zip/tar archives (DOTA parts, UCMerced_LandUse.zip), folders, GeoTIFF scenes; "
        "local paths or URLs (s3://, gs://, https://)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder for the shards")
    add_config(parser, help="YAML with a preprocess section")
    parser.add_argument(
        "--layout", choices=("auto", *LAYOUTS), default=None, help="default: detected per input"
    )
    parser.add_argument(
        "--tile-size", type=int, help=f"train tile side {config_default('preprocess.tile_size')}"
    )
    parser.add_argument(
        "--stride", type=int, help=f"train tile step {config_default('preprocess.stride')}"
    )
    parser.add_argument(
        "--shard-max-bytes",
        type=int,
        help=f"shard size, about {config_default('preprocess.shard_max_bytes')}",
    )
    parser.add_argument(
        "--image-format",
        choices=("png", "webp"),
        help=f"lossless format of the samples {config_default('preprocess.image_format')}",
    )
    parser.add_argument(
        "--split-seed",
        type=int,
        help=f"seed of the train/val/test split by image {config_default('preprocess.split_seed')}",
    )
    parser.add_argument(
        "--workers", type=int, help="shard tasks in flight (default: the cluster's CPUs)"
    )
    add_address(parser)
    add_overwrite(parser, help="replace another job's shards in --out")
    add_progress(parser)
    parser.add_argument(
        "--local", action="store_true", help="no Ray: write the shards in this process"
    )
    args = parser.parse_args(argv)

    overrides = {
        "preprocess.layout": args.layout,
        "preprocess.tile_size": args.tile_size,
        "preprocess.stride": args.stride,
        "preprocess.shard_max_bytes": args.shard_max_bytes,
        "preprocess.image_format": args.image_format,
        "preprocess.split_seed": args.split_seed,
    }
    try:
        cfg = load_config(args.config, overrides).preprocess
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {args.workers}")
        result = preprocess(
            args.inputs,
            args.out,
            cfg,
            workers=args.workers,
            address=args.address,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            use_ray=not args.local,
        )
    except (ArchiveError, ConfigError, OutputDirError, ValueError) as exc:
        print(f"ltchm preprocess: error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    manifest = result.manifest
    if not sum(manifest["samples"].values()):
        # an empty set of shards is a failed job, whatever each image's reason
        reasons = Counter(s["reason"] for s in manifest.get("skipped", []))
        why = "; ".join(f"{n} x {r}" for r, n in reasons.most_common(2)) or "no image"
        print(
            f"ltchm preprocess: error: no sample written ({why}); see "
            f"{result.out_dir / MANIFEST} 'skipped'",
            file=sys.stderr,
        )
        return 1
    empty = empty_splits(manifest)
    for split, members in empty.items():
        print(
            f"ltchm preprocess: error: split {split!r} is empty: all {len(members)} of its "
            f"images were skipped; see {result.out_dir / MANIFEST} 'skipped'",
            file=sys.stderr,
        )
        for s in members[:5]:
            print(f"  {s['member']}: {s['reason']}", file=sys.stderr)
        if len(members) > 5:
            print(f"  ... and {len(members) - 5} more", file=sys.stderr)
    return 1 if empty else 0


def empty_splits(manifest: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The splits the plan gave images to that ended with no sample, with their skipped
    members (a split the hash gave no image, as with a handful of images, is not one)."""
    planned = {s["split"] for s in manifest["shards"]}
    return {
        split: [s for s in manifest.get("skipped", []) if s.get("split") == split]
        for split in sorted(planned)
        if not manifest["samples"].get(split)
    }


if __name__ == "__main__":
    sys.exit(main())
