"""Forward time and peak memory of LTCHM against CompressAI's cheng2020-attn at the same N.

Eval mode, no grad, batch 1, at 256x256 and 512x512. Timing runs every model in one
process, alternating: each of ``--rounds`` rounds times ``--reps`` forwards of every model
(in a rotated order) and keeps their median, so a load that comes and goes on a shared
machine hits the models of a round alike; the table gives each model's median over the
rounds and the median (and quartiles) of its per-round ratio to cheng2020-attn. Peak
resident memory comes from one fresh subprocess per model, so it is that model's own. A model
is a registry name, ``name:layout`` for an LTCHM ``dam_layout`` (``ltchm`` alone is the
default layout); ``--models`` adds e.g. the Table 4 ablations, which show where the time goes.

    python benchmarks/forward.py [--N 192] [--rounds 15] [--reps 2] [--sizes 256 512]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

BASELINE = "cheng2020-attn"
MODELS = ("ltchm", "ltchm:table1", BASELINE)


def build(spec: str, N: int) -> nn.Module:
    """The model ``spec`` names (``name`` or ``name:dam_layout``) in eval mode, seed 0."""
    from ltchm.zoo import get_model

    torch.manual_seed(0)
    name, _, layout = spec.partition(":")
    return get_model(name, N=N, **({"dam_layout": layout} if layout else {})).eval()


def peak_worker(spec: str, N: int, size: int) -> dict[str, float]:
    """Peak resident memory (MiB) that one forward adds, in this fresh process."""
    model = build(spec, N)
    x = torch.rand(1, 3, size, size)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.inference_mode():
        model(x)
    return {"peak_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024}


def peak(spec: str, N: int, size: int, tune: bool) -> float:
    cmd = [sys.executable, __file__, "--peak-worker", spec, str(N), str(size)]
    if not tune:
        cmd.append("--no-tune")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_mib"])


def time_rounds(
    specs: list[str], N: int, size: int, rounds: int, reps: int
) -> dict[str, list[float]]:
    """Per model, one median forward time (s) per round; the models alternate in each round."""
    models = {s: build(s, N) for s in specs}
    x = torch.rand(1, 3, size, size)
    times: dict[str, list[float]] = {s: [] for s in specs}
    with torch.inference_mode():
        for m in models.values():
            m(x)  # warm-up: oneDNN primitives, allocator, caches
        for r in range(rounds):
            for s in specs[r % len(specs) :] + specs[: r % len(specs)]:
                reps_s = []
                for _ in range(reps):
                    t = time.perf_counter()
                    models[s](x)
                    reps_s.append(time.perf_counter() - t)
                times[s].append(statistics.median(reps_s))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds")
    parser.add_argument("--reps", type=int, default=2, help="timed forwards per model and round")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="cheng2020-attn added")
    parser.add_argument("--no-tune", action="store_true", help="glibc's default allocator")
    parser.add_argument("--peak-worker", nargs=3, metavar=("MODEL", "N", "SIZE"))
    args = parser.parse_args()
    if not args.no_tune:
        from ltchm.runtime import tune_allocator

        tune_allocator()
    if args.peak_worker:
        spec, N, size = args.peak_worker
        print(json.dumps(peak_worker(spec, int(N), int(size))))
        return 0

    specs = list(dict.fromkeys([*args.models, BASELINE]))
    print(
        f"# forward, eval, batch 1, N={args.N}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"allocator {'glibc default' if args.no_tune else 'tuned (ltchm.runtime)'}, "
        f"{args.rounds} alternating rounds x {args.reps} forwards, in one process\n"
    )
    print(
        "| model | size | time (s), median | x cheng2020-attn, median (quartiles; min-max) "
        "| peak MiB |"
    )
    print("|---|---|---|---|---|")
    # Peaks first: a child inherits its parent's ru_maxrss high-water mark across exec, so
    # they are measured while this process holds no model yet.
    peaks = {(s, z): peak(s, args.N, z, not args.no_tune) for z in args.sizes for s in specs}
    for size in args.sizes:
        times = time_rounds(specs, args.N, size, args.rounds, args.reps)
        base = times[BASELINE]
        for s in specs:
            ratios = [t / b for t, b in zip(times[s], base, strict=True)]
            q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
            print(
                f"| {s} | {size}² | {statistics.median(times[s]):.3f} | "
                f"{statistics.median(ratios):.2f} ({q1:.2f}-{q3:.2f}; "
                f"{min(ratios):.2f}-{max(ratios):.2f}) | "
                f"{peaks[s, size]:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
