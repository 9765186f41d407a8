"""``ltchm demo``: the three user flows end to end on the embedded defaults.

Local Ray, a SQLite MLflow store, CPU, and real imagery: the development data
(``../shared/data/dev``) when present, else the public-domain samples in ``samples/``.

1. archives in the layouts users download: a DOTA image part, ``UCMerced_LandUse.zip``
   and a Gaofen-style folder of GeoTIFF scenes;
2. ``ltchm preprocess``: archives -> WebDataset shards, on Ray;
3. ``ltchm train --lambdas all``: the six rate points, DeepSpeed on Ray Train, tracked and
   registered in MLflow (small and brief: ``configs/demo.yaml``);
4. ``ltchm evaluate``: the six registered models against JPEG2000, RD curves and BD-rate;
5. ``ltchm compress-scenes`` over the georeferenced scenes and ``ltchm decompress-scene``
   of each result back into a GeoTIFF;
6. a summary table and where everything is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ltchm.config import LAMBDAS
from ltchm.imageio import list_images
from ltchm.paths import REPO_ROOT, SAMPLES, dev_data

__all__ = ["main"]

DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
# the shipped models the scene stage uses when present (samples/models/<set>/MODEL_CARD.md)
PRETRAINED_SET = "cpu-2h"
SCENE_LAMBDA = 2048


class Stages:
    """Numbered stage headers with their wall time."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.times: dict[str, float] = {}

    def run(self, title: str, fn: Callable[[], Any]) -> Any:
        self.done += 1
        print(f"\n[{self.done}/{self.total}] {title}", flush=True)
        t0 = time.perf_counter()
        result = fn()
        self.times[title] = time.perf_counter() - t0
        print(f"      done in {self.times[title]:.0f} s", flush=True)
        return result


def _sources() -> dict[str, Any]:
    """Real images for each layout: the development data, else the embedded samples."""
    dev = dev_data()
    ucm = dev / "ucm" if dev and (dev / "ucm").is_dir() else SAMPLES / "ucm"
    dota = sorted((dev / "dota").glob("P*.png")) if dev and (dev / "dota").is_dir() else []
    scenes_dir = dev / "scenes" if dev and (dev / "scenes").is_dir() else SAMPLES / "scenes"
    scenes = sorted(scenes_dir.glob("*.tif"))
    return {"ucm": ucm, "dota": dota, "scenes": scenes, "origin": "dev" if dev else "samples"}


def _archives(src: dict[str, Any], root: Path) -> list[Path]:
    from pipeline.sample_archives import make_dota_part, make_gaofen_folder, make_ucmerced_zip

    root.mkdir(parents=True, exist_ok=True)
    out = [make_ucmerced_zip(list_images(src["ucm"]), root / "UCMerced_LandUse.zip")]
    if src["dota"]:
        out.append(make_dota_part(src["dota"], root / "DOTA_part1.zip"))
    # Gaofen deliveries are multi-band GeoTIFF scenes; these are the 16-bit and 4-band ones
    gaofen = [p for p in src["scenes"] if p.stem.endswith(("rgb16", "20100629"))]
    if gaofen:
        out.append(make_gaofen_folder(gaofen, root / "gaofen"))
    for path in out:
        size = sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else None
        size = size if size is not None else path.stat().st_size
        print(f"      {path.name:<24} {size / 1e6:6.1f} MB")
    return out


def _preprocess(archives: list[Path], shards: Path) -> dict[str, Any]:
    from jobs.preprocess import _summary, preprocess
    from ltchm.config import load_config

    cfg = load_config(DEMO_CONFIG).preprocess
    result = preprocess(archives, shards, cfg, overwrite=True)
    print("      " + _summary(result).replace("\n", "\n      "))
    return result.manifest


def _train(shards: Path, out: Path, uri: str, steps: int | None) -> list[Any]:
    import jobs.train as train_job

    argv = ["--lambdas", "all", "--config", str(DEMO_CONFIG), "--shards", str(shards)]
    argv += ["--tracking-uri", uri, "--out", str(out)]
    if steps:
        argv += ["--steps", str(steps)]
    outcomes = train_job.train(train_job._parser().parse_args(argv))
    train_job.report(outcomes)
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        raise RuntimeError(f"training failed for lambda {[o.lmbda for o in failed]}")
    return outcomes


def _evaluate(shards: Path, images: Path, out: Path, uri: str, max_images: int) -> Path:
    """The six registered models against JPEG2000 on held-out images: the test split, else
    the val split (the split hashes each image, and a few demo images can leave one empty),
    else, with a warning, the UC-Merced images themselves."""
    from jobs.evaluate import main as evaluate

    for split in ("test", "val"):
        tars = sorted(shards.glob(f"{split}-*.tar"))
        if tars:
            # a brace pattern over the split's shards, as webdataset takes them
            data = str(shards / f"{split}-{{{tars[0].stem[-6:]}..{tars[-1].stem[-6:]}}}.tar")
            print(f"      on the {split} split")
            break
    else:
        data = str(images)
        print(f"      warning: no test or val images in the shards; evaluating on {images}")
    models = [f"ltchm-demo=models:/ltchm-lambda{lmbda}@candidate" for lmbda in LAMBDAS]
    argv = ["--models", *models, "--data", data, "--codecs", "jpeg2000"]
    argv += ["--out", str(out), "--no-lpips", "--max-images", str(max_images)]
    argv += ["--tracking-uri", uri, "--quiet", "--no-complexity"]
    if evaluate(argv) != 0:
        raise RuntimeError("evaluation failed")
    return out


def _scenes(scenes: list[Path], out: Path, model: str) -> list[dict[str, Any]]:
    from jobs.compress_scenes import main as compress_scenes
    from pipeline.scenes.decompress import main as decompress_scene

    code = compress_scenes([*map(str, scenes), "--model", model, "--out", str(out)])
    if code not in (0, 1):
        raise RuntimeError("compress-scenes failed")
    rows = json.loads((out / "report.json").read_text())
    decoded = out / "decoded"
    decoded.mkdir(exist_ok=True)
    for row in rows:
        if row["status"] in ("done", "skipped") and row.get("output"):
            ltcs = out / row["output"]  # relative to the output folder
            dest = decoded / f"{ltcs.stem}.tif"
            if decompress_scene([str(ltcs), str(dest)]) != 0:
                raise RuntimeError(f"decompress-scene failed for {ltcs}")
            row["decoded"] = str(dest)
    return rows


def _summary(stages: Stages, info: dict[str, Any]) -> None:
    print("\n" + "=" * 78)
    print("Summary")
    print("=" * 78)
    width = max(map(len, stages.times))
    for title, seconds in stages.times.items():
        print(f"  {title:<{width}}  {seconds:6.0f} s")
    print(f"  {'total':<{width}}  {sum(stages.times.values()):6.0f} s")
    print()
    print(f"  {'lambda':>6} {'registered model':<22} {'val bpp':>8} {'val PSNR':>9}")
    for row in info["models"]:
        print(
            f"  {row['lmbda']:>6g} {row['name'] + ' v' + row['version']:<22} "
            f"{row['val_bpp']:>8.3f} {row['val_psnr']:>9.2f}"
        )
    print()
    print(f"  Scenes coded by {info['scene_model']}, beside JPEG2000 (OpenJPEG) at the same bytes;")
    print("  PSNR: the lowest over the bands, each in its native range, over valid pixels.")
    print(
        f"  {'scene':<36} {'bands':>5} {'dtype':>7} {'bytes':>8} {'bpp':>6} "
        f"{'PSNR':>7} {'JPEG2000':>9} {'learned - J2K':>14}"
    )
    gaps = []
    for row in info["scenes"]:
        name = Path(str(row["scene"])).name[:36]
        if row["status"] in ("done", "skipped"):
            psnr, j2k = _db(row.get("psnr_min_db")), row.get("j2k_psnr_min_db")
            gap = ""
            if isinstance(psnr, float) and isinstance(j2k, float):
                gaps.append(psnr - j2k)
                gap = f"{psnr - j2k:+.2f} dB"
            print(
                f"  {name:<36} {row['bands']:>5} {row['dtype']:>7} {int(row['bytes']):>8} "
                f"{float(row['bpp']):>6.3f} {_fmt_db(psnr):>7} {_fmt_db(j2k):>9} {gap:>14}"
            )
        else:
            print(f"  {name:<36} failed: {row['error']}"[:110])
    if gaps:
        verdict = "above" if min(gaps) > 0 else "below" if max(gaps) < 0 else "around"
        print(
            f"\n  The learned codec is {verdict} JPEG2000 at equal bytes here "
            f"({min(gaps):+.1f} to {max(gaps):+.1f} dB)."
        )
        if info.get("scene_model_note"):
            print(f"  {info['scene_model_note']}")
    print()
    for label, path in info["paths"].items():
        print(f"  {label:<22} {path}")


def _db(value: Any) -> float | str:
    if value in (None, "inf"):
        return str(value)
    return float(value)


def _fmt_db(value: float | str | None) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _scene_model(choice: str | None, steps: int | None) -> tuple[str, str]:
    """The model spec that codes the scenes, and what to tell the user about it."""
    from ltchm.codec.pretrained import pretrained_path, pretrained_sets

    own = (
        f"These are the demo's own models: N = 16, {steps or 60} steps (configs/demo.yaml), "
        "a check of the platform, not of the codec's quality."
    )
    if choice is None:
        sets = pretrained_sets()
        if PRETRAINED_SET in sets and SCENE_LAMBDA in sets[PRETRAINED_SET]:
            spec = f"pretrained:{PRETRAINED_SET}/{SCENE_LAMBDA}"
            card = pretrained_path(spec).parent / "MODEL_CARD.md"
            return spec, f"A shipped pretrained model; how it was trained and measured: {card}."
        choice = "4096"
    if choice.isdigit() and int(choice) in LAMBDAS:
        return f"models:/ltchm-lambda{choice}@candidate", own
    return choice, ""


def _jpeg2000_beside(rows: list[dict[str, Any]], scenes: list[Path]) -> None:
    """Add to each coded scene the PSNR of JPEG2000 at the same number of bytes."""
    from pipeline.scenes.baseline import jpeg2000_at_bytes

    paths = {p.name: p for p in scenes}  # the report names each scene by its file name
    for row in rows:
        source = paths.get(Path(str(row["scene"])).name)
        if row["status"] in ("done", "skipped") and row.get("bytes") and source:
            try:
                ref = jpeg2000_at_bytes(source, int(row["bytes"]))
            except (ValueError, OSError) as exc:  # e.g. float scenes: no JPEG2000 reference
                row["j2k_error"] = str(exc)
                continue
            row["j2k_bytes"], row["j2k_psnr_min_db"] = ref.bytes, ref.psnr_min_db


def _registered(uri: str) -> list[dict[str, Any]]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    rows = []
    for lmbda in LAMBDAS:
        name = f"ltchm-lambda{lmbda}"
        version = client.get_model_version_by_alias(name, "candidate")
        run = client.get_run(version.run_id)
        rows.append(
            {
                "lmbda": lmbda,
                "name": name,
                "version": str(version.version),
                "val_bpp": run.data.metrics.get("val_bpp", float("nan")),
                "val_psnr": run.data.metrics.get("val_psnr", float("nan")),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ltchm demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--steps", type=int, help="training steps per rate point (demo: 60)")
    parser.add_argument("--eval-images", type=int, default=4, help="test images evaluated")
    parser.add_argument(
        "--scene-model",
        help="the model that codes the scenes: a rate point of the demo's own (128 ... 4096) "
        "or any model spec; default: the shipped pretrained set's "
        f"{SCENE_LAMBDA} when there is one (samples/models), else the demo's own 4096",
    )
    parser.add_argument("--keep", action="store_true", help="keep an earlier demo's outputs")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    if out.exists() and not args.keep:
        shutil.rmtree(out)  # the demo's own folder: a rerun starts from scratch
    out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{out / 'mlruns.db'}"
    from jobs.training.tracking import using_tracking_uri

    # models:/ URIs (evaluation, scene coding) resolve against the demo's store while it
    # runs; a caller's own store (a notebook, the test suite) is restored afterwards
    with using_tracking_uri(uri):
        return _run(args, out, uri)


def _run(args: argparse.Namespace, out: Path, uri: str) -> int:
    src = _sources()
    print(f"ltchm demo: real imagery from the {src['origin']} data; outputs in {out}")
    stages = Stages(6)
    archives = stages.run(
        "archives in the DOTA / UC-Merced / Gaofen layouts", lambda: _archives(src, out / "raw")
    )
    shards = out / "shards"
    stages.run("preprocess: archives -> WebDataset shards (Ray Data)",
               lambda: _preprocess(archives, shards))  # fmt: skip
    stages.run("train the six rate points (DeepSpeed on Ray Train, MLflow)",
               lambda: _train(shards, out / "runs", uri, args.steps))  # fmt: skip
    evaluation = stages.run(
        "evaluate on held-out images against JPEG2000 (RD curves, BD-rate)",
        lambda: _evaluate(shards, src["ucm"], out / "evaluation", uri, args.eval_images),
    )
    scene_model, note = _scene_model(args.scene_model, args.steps)
    scene_rows = stages.run(
        "compress the scenes and decompress them into GeoTIFFs",
        lambda: _scenes(src["scenes"], out / "scenes", scene_model),
    )
    stages.run(
        "JPEG2000 at the same bytes, for reference",
        lambda: _jpeg2000_beside(scene_rows, src["scenes"]),
    )
    plots = sorted(evaluation.glob("*psnr*.png")) or sorted(evaluation.glob("*.png"))
    _summary(
        stages,
        {
            "models": _registered(uri),
            "scenes": scene_rows,
            "scene_model": scene_model,
            "scene_model_note": note,
            "paths": {
                "RD plot": plots[0] if plots else evaluation,
                "BD-rate table": evaluation / "bd.md",
                "MLflow store": f"{uri}  (mlflow ui --backend-store-uri {uri})",
                "checkpoints": out / "runs",
                "shards": shards,
                "compressed scenes": out / "scenes",
                "decoded GeoTIFFs": out / "scenes" / "decoded",
            },
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
