"""Does training converge toward a codec worth using? BD-rate against the classical codecs
as a function of training steps, with real bytes, on held-out images.

``run``: the shards of ``benchmarks/devshards.py`` (UC-Merced, DOTA and the 8-bit scenes of
the development data through ``ltchm preprocess``; a hash split that training never
crosses); ``ltchm train`` with the CPU recipe (``configs/cpu.yaml``) at three rate points,
writing a codec snapshot at regular intervals; each snapshot set evaluated with real bytes
by ``ltchm evaluate`` on the test split against JPEG, WebP and JPEG2000; BD-rate (PSNR and
MS-SSIM) against each, per step and per machine-hour, printed, plotted and logged to
MLflow (the run "convergence" in the benchmark's store).

The budget is machine time counted in steps: ``--budget-hours`` of this machine at the
recipe's idle step time (``--step-seconds``, measured by ``benchmarks/training.py`` on an
idle machine), shared equally by the rate points, so that other load on the machine changes
the wall time, not the result.

``sweep``: the recipe's choices, each variant trained at one rate point for the same
machine time and scored on the validation split (never the test split) by the training's
own real-bytes validation: ``J = λ · MSE + bpp``, lower is better.

    python benchmarks/convergence.py run [--budget-hours 2] [--lambdas 128,512,2048]
    python benchmarks/convergence.py sweep --variant lr1e-4 train.lr=1e-4 \\
        --variant lr1e-3 train.lr=1e-3 [--seconds 720]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from devshards import build_shards

from ltchm.paths import REPO_ROOT

RECIPE = REPO_ROOT / "configs" / "cpu.yaml"
# configs/cpu.yaml's step time as `ltchm train` runs it on the idle 2-core development
# machine (`calibrate`; benchmarks/RESULTS.md): the unit of the budget. The same machine has
# run 1.6x faster in one session than in another, so calibrate in the session that runs the
# budget and pass --step-seconds; 0.59 s is the calibration of the recorded convergence run.
IDLE_STEP_SECONDS = 0.59
CLASSICAL = ("jpeg", "webp", "jpeg2000")


def _yaml_value(text: str) -> Any:
    from ltchm.config import yaml_value

    return yaml_value(text)


def write_config(path: Path, base: Path, settings: dict[str, Any]) -> Path:
    """A YAML file that extends ``base`` with dotted ``settings``."""
    import yaml

    tree: dict[str, Any] = {"extends": str(base)}
    for dotted, value in settings.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def train(config: Path, lambdas: str, shards: Path, out: Path, uri: str) -> None:
    cmd = [sys.executable, "-m", "ltchm", "train", "--lambdas", lambdas, "--config", str(config)]
    cmd += ["--shards", str(shards), "--out", str(out), "--tracking-uri", uri]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)


def evaluate(models: list[Path], data: str, out: Path) -> list[dict[str, Any]]:
    """``ltchm evaluate`` of one snapshot per rate point and the classical codecs; rd rows."""
    if not (out / "rd.json").is_file():
        cmd = [sys.executable, "-m", "ltchm", "evaluate", "--data", data, "--out", str(out)]
        cmd += ["--models", *(f"ltchm-cpu={m}" for m in models)]
        cmd += ["--codecs", ",".join(CLASSICAL), "--no-lpips", "--no-complexity"]
        cmd += ["--no-mlflow", "--quiet", "--device", "cpu"]
        subprocess.run(cmd, check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    return list(json.loads((out / "rd.json").read_text()))


def bd_against(rd: list[dict[str, Any]], anchor: str, codec: str = "ltchm-cpu") -> dict[str, Any]:
    """BD-rate of ``codec`` against ``anchor`` on PSNR and MS-SSIM (dB)."""
    from ltchm.evaluation.bd import bd_table

    row = next(r for r in bd_table(rd, anchor=anchor) if r["codec"] == codec)
    return {
        "psnr": row["bd_rate_psnr"],
        "ms_ssim": row["bd_rate_ms_ssim_db"],
        "notes": row["notes"],
    }


def _test_data(shards: Path) -> str:
    tars = sorted(shards.glob("test-*.tar"))
    if not tars:
        raise SystemExit(f"{shards}: no test split")
    return (
        str(tars[0])
        if len(tars) == 1
        else f"{shards}/test-{{{tars[0].stem[-6:]}..{tars[-1].stem[-6:]}}}.tar"
    )


def run(args: argparse.Namespace) -> int:
    """Train the rate points within the budget, evaluate every snapshot set, report."""
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    shards = build_shards(work / "shards")
    lambdas = [int(v) for v in args.lambdas.split(",")]
    total = int(args.budget_hours * 3600 / args.step_seconds)
    uri = f"sqlite:///{work / 'mlruns.db'}"
    extra = dict(args.set or [])
    base = args.base_lambda
    others = [lm for lm in lambdas if lm != base]
    if base is None:
        # every rate point from scratch, an equal share each
        steps, spent = total // len(lambdas), 0
        plan = f"{steps} steps for each of lambda {args.lambdas}, from scratch"
    else:
        # the base rate point first; the others fine-tuned from it (train.init_from)
        if base not in lambdas:
            raise SystemExit(f"--base-lambda {base} is not among --lambdas {args.lambdas}")
        spent = int(total * args.base_share)
        steps = (total - spent) // len(others)
        plan = (
            f"lambda {base} for {spent} steps, then {', '.join(map(str, others))} fine-tuned "
            f"from it for {steps} steps each"
        )
    every = max(1, steps // args.evals)
    print(
        f"budget {args.budget_hours} h of this machine at {args.step_seconds} s/step = "
        f"{total} steps: {plan}; snapshots every {every} steps",
        flush=True,
    )
    runs = work / "runs"
    t0 = time.perf_counter()
    if base is not None:
        base_cfg = write_config(
            work / "base.yaml",
            args.config.resolve(),
            {
                "train.steps": spent,
                "train.val_every": max(1, spent // 4),
                "train.checkpoint_every": max(1, spent // 4),
                "tracking.system_metrics": False,
            }
            | extra,
        )
        if not (runs / f"lambda_{base}" / "model.pt").is_file():
            train(base_cfg, str(base), shards, runs, uri)
    settings = {
        "train.steps": steps,
        "train.snapshot_every": every,
        "train.checkpoint_every": every,
        "tracking.system_metrics": False,
    }
    if base is not None:
        settings["train.init_from"] = str(runs / f"lambda_{base}" / "model.pt")
    fine = dict(args.fine_tune_set or []) if base is not None else {}
    if fine:
        plan += f" ({', '.join(f'{k} {v}' for k, v in fine.items())})"
    config = write_config(work / "convergence.yaml", args.config.resolve(), settings | extra | fine)
    todo = [lm for lm in (lambdas if base is None else others)]
    if not all((runs / f"lambda_{lm}" / "model.pt").is_file() for lm in todo):
        train(config, ",".join(map(str, todo)), shards, runs, uri)
    print(f"trained in {time.perf_counter() - t0:.0f} s wall", flush=True)

    data = _test_data(shards)
    series = []
    snap_steps = sorted(
        {int(p.stem.split("_")[1]) for p in (runs / f"lambda_{todo[0]}" / "snapshots").glob("*.pt")}
    )
    # The final snapshot lands a few steps after the last periodic one when the steps are not
    # a multiple of the interval; evaluating both gave a "last interval" slope over 2 steps.
    snap_steps = [s for s in snap_steps if s == snap_steps[-1] or snap_steps[-1] - s >= every // 2]
    for step in snap_steps:
        models = [
            runs / f"lambda_{lm}" / "model.pt"
            if lm == base
            else runs / f"lambda_{lm}" / "snapshots" / f"step_{step:08d}.pt"
            for lm in lambdas
        ]
        rd = evaluate(models, data, work / "eval" / f"step_{step:08d}")
        row: dict[str, Any] = {
            "step": step,
            "total_steps": spent + step * len(todo),
            "machine_hours": (spent + step * len(todo)) * args.step_seconds / 3600,
        }
        for anchor in CLASSICAL:
            bd = bd_against(rd, anchor)
            row[f"{anchor}_psnr"], row[f"{anchor}_ms_ssim"] = bd["psnr"], bd["ms_ssim"]
            if bd["notes"]:
                row.setdefault("notes", []).append(f"{anchor}: {bd['notes']}")
        learned = sorted((r["bpp"], r["psnr"]) for r in rd if r["codec"] == "ltchm-cpu")
        row["points"] = [(round(b, 4), round(p, 2)) for b, p in learned]
        series.append(row)
        print(f"step {step}: " + _fmt_row(row), flush=True)

    (work / "convergence.json").write_text(json.dumps(series, indent=1))
    table = _markdown(series, lambdas, plan, args)
    (work / "convergence.md").write_text(table)
    print("\n" + table)
    _plot(series, work / "convergence.png", plan)
    _log(uri, series, args, plan, work)
    print(f"plot: {work / 'convergence.png'}; series logged to MLflow at {uri}")
    return 0


def _fmt_row(row: dict[str, Any]) -> str:
    return ", ".join(
        f"{a} {row[f'{a}_psnr']:+.1f} % / {row[f'{a}_ms_ssim']:+.1f} %" for a in CLASSICAL
    )


def _pct(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:+.1f} %"


def _markdown(series: list[dict[str, Any]], lambdas: list[int], plan: str, args: Any) -> str:
    lines = [
        f"BD-rate of the CPU recipe (lambda {', '.join(map(str, lambdas))}: {plan}) against "
        "each classical codec, on PSNR / on MS-SSIM (dB); negative = fewer bytes for the same "
        "quality. Real bytes, the held-out test split.",
        "",
        "| step | machine-hours | vs JPEG | vs WebP | vs JPEG2000 | learned points (bpp, PSNR) |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in series:
        cells = [f"{_pct(r[f'{a}_psnr'])} / {_pct(r[f'{a}_ms_ssim'])}" for a in CLASSICAL]
        pts = " ".join(f"({b:.3f}, {p:.2f})" for b, p in r["points"])
        lines.append(
            f"| {r['step']} | {r['machine_hours']:.2f} | " + " | ".join(cells) + f" | {pts} |"
        )
    if len(series) >= 2:
        a, b = series[-2], series[-1]
        hours = b["machine_hours"] - a["machine_hours"]
        for anchor in CLASSICAL:
            delta = b[f"{anchor}_psnr"] - a[f"{anchor}_psnr"]
            if not math.isfinite(delta):
                continue
            line = (
                f"\nLast interval, vs {anchor} (PSNR): {delta:+.1f} points in {hours:.2f} "
                f"machine-hours ({delta / hours:+.1f} per hour)"
            )
            if delta < 0 < b[f"{anchor}_psnr"]:
                line += (
                    f"; at that slope it crosses 0 after about "
                    f"{b[f'{anchor}_psnr'] / (-delta / hours):.1f} more machine-hours"
                )
            lines.append(line + ".")
    return "\n".join(lines) + "\n"


def _plot(series: list[dict[str, Any]], path: Path, plan: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    hours = [r["machine_hours"] for r in series]
    for ax, metric, title in ((axes[0], "psnr", "PSNR"), (axes[1], "ms_ssim", "MS-SSIM (dB)")):
        for anchor, style in zip(CLASSICAL, ("o-", "s-", "^-"), strict=True):
            ax.plot(hours, [r[f"{anchor}_{metric}"] for r in series], style, label=f"vs {anchor}")
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xlabel="machine-hours of training (2 cores, all rate points)",
               title=f"BD-rate on {title}")  # fmt: skip
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("BD-rate (%), negative = learned codec smaller")
    axes[0].legend()
    fig.suptitle(f"CPU recipe: {plan}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _log(uri: str, series: list[dict[str, Any]], args: Any, plan: str, work: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from ltchm.tracking import ensure_experiment

    client = MlflowClient(uri)
    exp = ensure_experiment(uri, "ltchm-convergence", None)
    run = client.create_run(exp, run_name="convergence", tags={"ltchm.kind": "convergence"})
    rid = run.info.run_id
    for key, value in {
        "lambdas": args.lambdas,
        "budget_hours": args.budget_hours,
        "step_seconds": args.step_seconds,
        "plan": plan,
        "config": str(args.config),
    }.items():
        client.log_param(rid, key, value)
    now = int(time.time() * 1000)
    metrics = []
    for r in series:
        for anchor in CLASSICAL:
            for metric in ("psnr", "ms_ssim"):
                v = r[f"{anchor}_{metric}"]
                if math.isfinite(v):
                    metrics.append(Metric(f"bd_rate_{metric}_vs_{anchor}", v, now, r["step"]))
        metrics.append(Metric("machine_hours", r["machine_hours"], now, r["step"]))
        metrics.append(Metric("total_steps", r["total_steps"], now, r["step"]))
    client.log_batch(rid, metrics=metrics)
    for name in ("convergence.png", "convergence.md", "convergence.json"):
        client.log_artifact(rid, str(work / name))
    client.set_terminated(rid)


def sweep(args: argparse.Namespace) -> int:
    """Each variant at one rate point for the same machine time; J on the val split."""
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    shards = build_shards(work / "shards")
    uri = f"sqlite:///{work / 'mlruns.db'}"
    results = []
    for name, *pairs in args.variant:
        settings = {k: _yaml_value(v) for k, v in (p.split("=", 1) for p in pairs)}
        step_s = float(settings.pop("step_seconds", args.step_seconds))
        steps = int(args.seconds / step_s)
        out = work / name
        settings |= {
            "train.steps": steps,
            "train.val_every": max(1, steps // 3),
            "train.checkpoint_every": steps,
            "train.val_images": 16,
            "tracking.system_metrics": False,
            "tracking.experiment": f"sweep-{name}",
        }
        config = write_config(work / f"{name}.yaml", args.config.resolve(), settings)
        if not (out / f"lambda_{args.lmbda}" / "model.pt").is_file():
            train(config, str(args.lmbda), shards, out, uri)
        curve = _val_curve(uri, f"sweep-{name}", args.lmbda)
        results.append((name, curve[-1]["step"], curve))  # the steps it was trained for
    print(f"\nJ = {args.lmbda} * MSE + bpp on the val split (real bytes), lower is better\n")
    print("| variant | steps | J along the run (step: J) | final bpp | final PSNR (dB) | final J |")
    print("|---|---:|---|---:|---:|---:|")
    for name, steps, curve in results:
        js = ", ".join(f"{c['step']}: {c['J']:.3f}" for c in curve[:-1])
        last = curve[-1]
        print(
            f"| {name} | {steps} | {js} | {last['bpp']:.4f} | {last['psnr']:.2f} "
            f"| {last['J']:.4f} |"
        )
    return 0


def _val_curve(uri: str, experiment: str, lmbda: int) -> list[dict[str, float]]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    (r,) = client.search_runs([exp.experiment_id], "tags.`ltchm.kind` = 'train'")
    bpp = {m.step: m.value for m in client.get_metric_history(r.info.run_id, "val_bpp")}
    psnr = {m.step: m.value for m in client.get_metric_history(r.info.run_id, "val_psnr")}
    return [
        {"step": s, "bpp": bpp[s], "psnr": psnr[s], "J": lmbda * 10 ** (-psnr[s] / 10) + bpp[s]}
        for s in sorted(bpp)
    ]


def calibrate(args: argparse.Namespace) -> int:
    """The recipe's step time as ``ltchm train`` runs it (run on an idle machine)."""
    import statistics

    from mlflow import MlflowClient

    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    shards = build_shards(work / "shards")
    uri = f"sqlite:///{work / 'mlruns.db'}"
    config = write_config(
        work / "calibrate.yaml",
        args.config.resolve(),
        {"train.steps": args.steps, "train.log_every": 1, "train.val_every": 10**9,
         "train.checkpoint_every": 10**9, "train.snapshot_every": None,
         "tracking.system_metrics": False},
    )  # fmt: skip
    load = os.getloadavg()[0]
    train(config, str(args.lmbda), shards, work / "runs", uri)
    client = MlflowClient(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("ltchm").experiment_id], "tags.`ltchm.kind` = 'train'"
    )
    history = client.get_metric_history(run.info.run_id, "seconds_per_step")
    times = [m.value for m in sorted(history, key=lambda m: m.step)]
    median = statistics.median(times[10:] or times)
    print(f"\n{args.config}: {median:.3f} s per step (median of steps 11-{args.steps}; "
          f"load average {load:.1f} at the start)")  # fmt: skip
    return 0


def ship(args: argparse.Namespace) -> int:
    """Copy a finished run's final models into ``samples/models/<set>/`` with a model card,
    only if they beat JPEG and WebP (BD-rate on PSNR < 0 at the last evaluation)."""
    import hashlib

    from ltchm.codec import load_checkpoint, save_checkpoint
    from ltchm.codec.pretrained import pretrained_dir

    work = args.out
    series = json.loads((work / "convergence.json").read_text())
    last = series[-1]
    beats = {a: last[f"{a}_psnr"] < 0 for a in ("jpeg", "webp")}
    if not all(beats.values()) and not args.force:
        print(f"not shipped: at the last evaluation it does not beat {beats}", file=sys.stderr)
        return 1
    dest = pretrained_dir() / args.name
    dest.mkdir(parents=True, exist_ok=True)
    rows = []
    paths = sorted((work / "runs").glob("lambda_*/model.pt"))
    if not paths:
        raise SystemExit(f"{work / 'runs'}: no trained models to ship")
    arch = ""
    for path in paths:
        target = dest / f"{path.parent.name}.pt"
        model = load_checkpoint(path)
        step = model.checkpoint_metadata.get("step")
        # float16 weights: three rate points within 20 MB (the tables are rebuilt from the
        # rounded weights, and the files are evaluated again below)
        meta = {"step": step, "trained_by": "benchmarks/convergence.py"}
        weights = save_checkpoint(model, target, lmbda=model.lmbda, half=True, metadata=meta)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        rows.append((model.lmbda, step, target, digest, weights))
        arch = f"N = {model.N}, {model.context} context, K = {model.K} {model.mixture} mixture"
    size = sum(t.stat().st_size for _, _, t, _, _ in rows)
    rd = evaluate([r[2] for r in rows], _test_data(work / "shards"), work / "eval" / "shipped")
    shipped = {a: bd_against(rd, a) for a in CLASSICAL}
    shipped_points = sorted((r["bpp"], r["psnr"]) for r in rd if r["codec"] == "ltchm-cpu")
    card = _model_card(args.name, work, series, rows, size, shipped, shipped_points, arch)
    (dest / "MODEL_CARD.md").write_text(card)
    print(card)
    print(f"shipped {len(rows)} models ({size / 2**20:.1f} MiB) into {dest}")
    return 0


def _model_card(
    name: str,
    work: Path,
    series: list[dict[str, Any]],
    rows: list[Any],
    size: int,
    shipped: dict[str, dict[str, Any]],
    points: list[tuple[float, float]],
    arch: str,
) -> str:
    import yaml

    manifest = json.loads((work / "shards" / "manifest.json").read_text())
    config = yaml.safe_load((work / "convergence.yaml").read_text())
    base = (work / "base.yaml").is_file()
    last = series[-1]
    lines = [
        f"# Pretrained set `{name}`",
        "",
        "LTCHM trained on two CPU cores for two hours by `benchmarks/convergence.py run` (the",
        "CPU recipe, `configs/cpu.yaml`): a codec that beats JPEG and WebP on held-out images,",
        "far from the paper's models (N = 192/256, 200k steps on a GPU).",
        "",
        "Use: `--model pretrained:" + name + "/<λ>` with any command, e.g.",
        f"`ltchm compress-scenes scene.tif --model pretrained:{name}/2048 --out out/`.",
        "",
        "| λ | steps | file | bytes | sha256 | weights hash |",
        "|---:|---:|---|---:|---|---|",
    ]
    for lmbda, step, target, digest, weights in rows:
        lines.append(
            f"| {lmbda:g} | {step} | `{target.name}` | {target.stat().st_size} | "
            f"`{digest[:16]}…` | `{weights[:16]}…` |"
        )
    lines += [
        "",
        f"{size / 2**20:.1f} MiB in all: the trained weights rounded to float16 (the coding "
        "tables built from the rounded weights; they load as float32).",
        "",
        "## Training",
        "",
        f"* Model: LTCHM (`ltchm`), {arch}; loss λ · MSE + bpp on images in [0, 1].",
        "* Recipe: `configs/cpu.yaml` on top of `configs/lambda_<λ>.yaml`: batch 4 of 128² "
        "crops, Adam at 1e-3 after a 100-step warm-up, cosine decay to 1e-5, gradient norm "
        "clipped at 1.0, DeepSpeed on one CPU worker through `ltchm train`.",
        "* Schedule: "
        + (
            "λ = 512 first from a random start, then λ = 128 and λ = 2048 fine-tuned from it "
            "(`train.init_from`), each with the same recipe; "
            if base
            else "each rate point from a random start; "
        )
        + f"steps per run: {config.get('train', {}).get('steps')} (the fine-tuned ones); "
        "budget 2 hours of the 2-core machine counted at its idle step time.",
        "* Data: the project's development images through `ltchm preprocess` "
        "(`benchmarks/devshards.py`, `benchmarks/devshards.yaml`): UC-Merced (USGS, public "
        "domain), DOTA-v1 (Google Earth imagery: **academic use only**), and the 8-bit scenes "
        "`rasterio_RGB.byte.tif` (Landsat, public domain), the NAIP tile (USDA, public domain),"
        " `riotiler_pix4d_alpha_nodata.tif` (rio-tiler, BSD-3) and `riocogeo_image_geos.tif` "
        f"(rio-cogeo, BSD-3); train split only: {manifest['counts']['train']['folder']['images']}"
        f" images, {manifest['counts']['train']['folder']['samples']} tiles of 256². "
        "Because DOTA is for academic use only, treat these weights the same way.",
        "",
        "## Measured",
        "",
        f"On the held-out test split ({manifest['counts']['test']['folder']['images']} images "
        "never seen in training; real bytes of `.ltc` files), against each classical codec "
        "with `ltchm evaluate` (BD-rate, akima; negative = fewer bytes for the same quality):",
        "",
        "| vs | these files: BD-rate on PSNR | on MS-SSIM (dB) | the float32 models: on PSNR |"
        " on MS-SSIM (dB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for anchor, label in (("jpeg", "JPEG (libjpeg-turbo)"), ("webp", "WebP (libwebp, -m 6)"),
                          ("jpeg2000", "JPEG2000 (OpenJPEG)")):  # fmt: skip
        lines.append(
            f"| {label} | {_pct(shipped[anchor]['psnr'])} | {_pct(shipped[anchor]['ms_ssim'])} "
            f"| {_pct(last[f'{anchor}_psnr'])} | {_pct(last[f'{anchor}_ms_ssim'])} |"
        )
    pts = ", ".join(f"{b:.3f} bpp / {p:.2f} dB" for b, p in points)
    lines += [
        "",
        f"RD points of these files (mean over the test images, λ ascending): {pts}.",
        'The whole series along training: `benchmarks/RESULTS.md`, "Convergence".',
        "",
        "## Limits",
        "",
        "* Trained on about twenty images for two CPU-hours: expect it to be weaker on imagery "
        "unlike these (other sensors, resolutions, seasons) and on 16-bit or multispectral "
        "bands (the scene codec maps them to 8-bit-like [0, 1] inputs per tile).",
        "* RGB-trained; other bands go through the same network.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="the convergence benchmark")
    r.add_argument("--budget-hours", type=float, default=2.0, help="machine-hours, all rate points")
    r.add_argument("--step-seconds", type=float, default=IDLE_STEP_SECONDS,
                   help="the recipe's idle step time (the budget's unit)")  # fmt: skip
    r.add_argument("--lambdas", default="128,512,2048")
    r.add_argument("--base-lambda", type=int, help="train it first, fine-tune the others from it")
    r.add_argument("--base-share", type=float, default=0.5, help="its share of the budget")
    r.add_argument("--evals", type=int, default=6, help="evaluations over the run")
    r.add_argument("--config", type=Path, default=RECIPE)
    r.add_argument("--set", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a config key (repeatable)")  # fmt: skip
    r.add_argument("--fine-tune-set", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a config key for the fine-tuned rate points only, after "
                   "--set (e.g. a lower train.lr than the base's)")  # fmt: skip
    r.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ltchm-convergence")
    s = sub.add_parser("sweep", help="compare recipe variants at equal machine time")
    s.add_argument("--variant", nargs="+", action="append", required=True,
                   metavar="NAME [KEY=VALUE ...]",
                   help="a name and dotted config settings; step_seconds=S gives its idle "
                   "step time when it differs from --step-seconds")  # fmt: skip
    s.add_argument("--seconds", type=float, default=720, help="machine time per variant")
    s.add_argument("--step-seconds", type=float, default=IDLE_STEP_SECONDS)
    s.add_argument("--lmbda", type=int, default=512)
    s.add_argument("--config", type=Path, default=RECIPE)
    s.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ltchm-sweep")
    c = sub.add_parser("calibrate", help="the recipe's step time (run on an idle machine)")
    c.add_argument("--steps", type=int, default=60)
    c.add_argument("--lmbda", type=int, default=512)
    c.add_argument("--config", type=Path, default=RECIPE)
    c.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ltchm-calibrate")
    sh = sub.add_parser("ship", help="copy a run's models into samples/models/<set>/")
    sh.add_argument("--name", default="cpu-2h")
    sh.add_argument("--force", action="store_true", help="ship even if it does not beat both")
    sh.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ltchm-convergence")
    args = p.parse_args()
    if getattr(args, "set", None):
        args.set = [(k, _yaml_value(v)) for k, v in args.set]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    commands = {"run": run, "sweep": sweep, "calibrate": calibrate, "ship": ship}
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
