"""The training engine against a bare PyTorch loop: step time, loss curve, time to first step.

``ltchm train`` runs each rate point as a Ray Train worker running DeepSpeed (ZeRO stage 1,
``torch_adam``), tracked in MLflow. This benchmark runs it as a user does (``ltchm train``
in a subprocess, 1 worker, CPU) and, in the same run, a bare PyTorch loop with the same
model, seed, data order (the same shard loader and seed), optimiser split (Adam on the
network, Adam on the entropy bottleneck's quantiles), learning-rate schedule, gradient
clipping and loss, both on the same number of threads. Both use the shards of
``benchmarks/devshards.py`` and the recipe of ``configs/cpu.yaml`` at N = 64, 128² crops,
batch 8, λ = 512.

Reported:

* step time: the platform's per-step time (its own ``seconds_per_step``, logged every step)
  over the bare loop's, median and mean over the steps after the first ``--skip``;
* loss curves: the mean of the last 50 losses of each, their relative difference, and
  the largest relative difference over the first 10 steps (same start: should be ~0); with
  several ``--seeds``, their paired difference and its standard error. The two loops part
  by chaos from a last-bit difference in gradient clipping; ``--clip deepspeed`` gives the
  bare loop DeepSpeed's clipping arithmetic, and the curves agree bit for bit (200 steps);
* time from ``ltchm train`` (process start) to the end of its first step, with the
  environment's DeepSpeed extension folder (``jobs/training/dsops.py``) and, for reference,
  with an empty one (what every run paid before: a JIT build of DeepSpeed's CPU op); and
  from the end of its last step to its exit (validation, checkpoint, Ray Train's shutdown,
  consolidation, registration).

    python benchmarks/training.py [--steps 200] [--seeds 0 1 2] [--out /tmp/ltchm-bench-training]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bare_loop import Clip, bare_steps
from devshards import build_shards

from ltchm.paths import REPO_ROOT

LAMBDA = 512


def bench_config(path: Path, steps: int, seed: int = 0) -> Path:
    """The benchmark's config: configs/cpu.yaml at N = 64, 128², batch 8, logged every step."""
    path.write_text(
        f"extends: {REPO_ROOT / 'configs' / 'cpu.yaml'}\n"
        "model: {N: 64, context: checkerboard}\n"
        f"train: {{steps: {steps}, seed: {seed}, batch_size: 8, patch_size: 128, log_every: 1,\n"
        f"        val_every: {10**9}, checkpoint_every: {10**9}, snapshot_every: null}}\n"
        "tracking: {system_metrics: false}\n"
    )
    return path


def load(config: Path) -> Any:
    from ltchm.config import load_config

    return load_config([REPO_ROOT / "configs" / f"lambda_{LAMBDA}.yaml", config])


def bare(config: Path, shards: Path, result: Path, clip: Clip = "torch") -> None:
    """The bare loop (run in its own process, as the platform's worker is)."""
    cfg = load(config)
    losses, times = [], []
    t_last = time.perf_counter()
    # what cpus_per_worker: null gives one worker
    for _, _, loss in bare_steps(cfg, shards, threads=os.cpu_count() or 1, clip=clip):
        losses.append(loss)
        now = time.perf_counter()
        times.append(now - t_last)
        t_last = now
    result.write_text(json.dumps({"loss": losses, "seconds_per_step": times}))


def platform(config: Path, shards: Path, out: Path, ext_dir: Path | None) -> dict[str, Any]:
    """``ltchm train`` in a subprocess; its per-step metrics read back from MLflow."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{out / 'mlruns.db'}"
    env = dict(os.environ)
    if ext_dir is not None:
        env["TORCH_EXTENSIONS_DIR"] = str(ext_dir)
    cmd = [sys.executable, "-m", "ltchm", "train", "--lambdas", str(LAMBDA), "--config"]
    cmd += [str(config), "--shards", str(shards), "--out", str(out / "runs")]
    cmd += ["--tracking-uri", uri]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    client = MlflowClient(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("ltchm").experiment_id], "tags.`ltchm.kind` = 'train'"
    )

    def series(key: str) -> list[float]:
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        return [m.value for m in history]

    per_step = series("seconds_per_step")
    first = series("time_to_first_step_s")[0]
    return {
        "loss": series("loss"),
        "seconds_per_step": per_step,
        "time_to_first_step_s": first,
        "wall_s": wall,
        # what the run costs after its last step: the final validation and checkpoint, Ray
        # Train's shutdown of the worker group, consolidation, registration, the exit
        "after_last_step_s": wall - first - sum(per_step[1:]),
    }


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def _last50(r: dict[str, Any]) -> float:
    return statistics.fmean(r["loss"][-50:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="a bare, a platform run each")
    p.add_argument("--skip", type=int, default=10, help="warm-up steps left out of the timing")
    p.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    p.add_argument("--no-cold", action="store_true", help="skip the empty-extension-folder run")
    p.add_argument(
        "--clip",
        choices=("torch", "deepspeed"),
        default="torch",
        help="the bare loop's gradient-norm arithmetic (deepspeed: the platform's)",
    )
    p.add_argument("--bare-run", nargs=4, metavar=("CONFIG", "SHARDS", "RESULT", "CLIP"),
                   help=argparse.SUPPRESS)  # fmt: skip
    args = p.parse_args()
    if args.bare_run:
        *paths, clip = args.bare_run
        bare(*map(Path, paths), clip=clip)
        return 0

    work = args.out or Path(tempfile.mkdtemp(prefix="ltchm-bench-training-"))
    work.mkdir(parents=True, exist_ok=True)
    shards = build_shards(work / "shards")
    print(f"work folder {work}; {args.steps} steps each, seeds {args.seeds}, "
          f"machine load {os.getloadavg()[0]:.1f}")  # fmt: skip

    runs: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    for i, seed in enumerate(args.seeds):
        config = bench_config(work / f"bench-seed{seed}.yaml", args.steps, seed)
        got: dict[str, dict[str, Any]] = {}
        # Alternating which loop goes first spreads a slow drift of the machine's load over both.
        for kind in ("bare", "platform") if i % 2 == 0 else ("platform", "bare"):
            print(f"seed {seed}: {kind} ...", flush=True)
            if kind == "bare":
                result = work / f"bare-seed{seed}.json"
                cmd = [sys.executable, __file__, "--bare-run", str(config), str(shards)]
                cmd += [str(result), args.clip]
                subprocess.run(cmd, check=True, cwd=REPO_ROOT)
                got[kind] = json.loads(result.read_text())
            else:
                got[kind] = platform(config, shards, work / f"platform-seed{seed}", None)
        runs.append((seed, got["platform"], got["bare"]))
    cold = None
    if not args.no_cold:
        print("platform, empty extension folder, 2 steps ...", flush=True)
        cold_cfg = bench_config(work / "cold.yaml", 2)
        cold = platform(cold_cfg, shards, work / "cold", work / "empty-ext")

    s = args.skip
    tp_all = [t for _, r, _ in runs for t in r["seconds_per_step"][s:]]
    tb_all = [t for _, _, r in runs for t in r["seconds_per_step"][s:]]
    print("\n| measure | platform | bare | platform / bare |\n|---|---|---|---|")
    for name, f in (("median", statistics.median), ("mean", statistics.fmean)):
        tp, tb = f(tp_all), f(tb_all)
        print(f"| step time, {name} of steps {s + 1}-{args.steps}, all seeds (s) "
              f"| {tp:.4g} | {tb:.4g} | {tp / tb:.3f} |")  # fmt: skip
    for seed, pr, br in runs:
        tp, tb = (statistics.median(r["seconds_per_step"][s:]) for r in (pr, br))
        lp, lb = _last50(pr), _last50(br)
        print(f"| seed {seed}: step time, median (s) | {tp:.4g} | {tb:.4g} | {tp / tb:.3f} |")
        print(f"| seed {seed}: mean of the last 50 losses | {lp:.4g} | {lb:.4g} | {lp / lb:.3f} |")
    lp = statistics.fmean(_last50(pr) for _, pr, _ in runs)
    lb = statistics.fmean(_last50(br) for _, _, br in runs)
    print(f"| mean of the last 50 losses, over the seeds | {lp:.4g} | {lb:.4g} | {lp / lb:.3f} |")

    first = max(
        _rel(x, y)
        for _, pr, br in runs
        for x, y in zip(pr["loss"][:10], br["loss"][:10], strict=True)
    )
    print(f"\nlargest relative loss difference over the first 10 steps: {first:.2e}")
    print(f"last-50 loss difference over the seeds: {100 * _rel(lp, lb):.2f} % (target <= 2 %)")
    if len(runs) > 1:
        # The seeds' spread is the yardstick: a platform that changed nothing would still differ
        # from the bare loop by about this much, since both runs' trajectories part by chaos.
        diffs = [_last50(pr) - _last50(br) for _, pr, br in runs]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5
        spread = statistics.stdev(_last50(br) for _, _, br in runs)
        print(f"paired difference {statistics.fmean(diffs):+.3f} ± {se:.3f} (standard error over "
              f"{len(runs)} seeds); the bare loop's last-50 mean varies by {spread:.3f} "
              f"(standard deviation) from seed to seed")  # fmt: skip
    print("\n| ltchm train to the end of step 1 | seconds |\n|---|---|")
    for seed, pr, _ in runs:
        print(f"| this environment's extension folder (built at install), seed {seed} | "
              f"{pr['time_to_first_step_s']:.1f} |")  # fmt: skip
    if cold is not None:
        print(f"| an empty extension folder (DeepSpeed JIT-builds its CPU op) | "
              f"{cold['time_to_first_step_s']:.1f} |")  # fmt: skip
    print("\n| ltchm train from the end of its last step to its exit | seconds |\n|---|---|")
    for seed, pr, _ in runs:
        print(f"| seed {seed} | {pr['after_last_step_s']:.1f} |")
    print(f"\nplatform wall time for {args.steps} steps, start to registered model: "
          f"{runs[0][1]['wall_s']:.0f} s")  # fmt: skip
    (work / "curves.json").write_text(
        json.dumps({str(seed): {"platform": pr, "bare": br} for seed, pr, br in runs})
    )
    _plot(runs, work / "training_curves.png")
    print(f"loss curves: {work / 'training_curves.png'}")
    return 0


def _plot(runs: list[tuple[int, dict[str, Any], dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    for seed, plat, b in runs:
        for name, r, style in (("platform", plat, "-"), ("bare", b, ":")):
            label = f"{name}, seed {seed}"
            ax[0].plot(range(1, len(r["loss"]) + 1), r["loss"], style, label=label, lw=1)
            ax[1].plot(range(1, len(r["seconds_per_step"]) + 1), r["seconds_per_step"], style,
                       label=label, lw=1)  # fmt: skip
    ax[0].set(xlabel="step", ylabel="loss (λ·MSE + bpp)", yscale="log")
    ax[1].set(xlabel="step", ylabel="seconds per step")
    for a in ax:
        a.legend()
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
