"""Forward time and peak memory of LTCHM against CompressAI's cheng2020-attn at the same N.

Eval mode, no grad, batch 1, at 256x256 and 512x512. Each (model, size) runs in a fresh
subprocess so its peak resident memory is its own; one run times ``--reps`` forwards after a
warm-up and keeps their median. The models are interleaved: ``--rounds`` rounds each run
every model once (in a rotated order), so a load that comes and goes on a shared machine hits
them alike; the table gives each model's median over the rounds and the median of its
per-round ratio to cheng2020-attn. A model is a registry name, ``name:layout`` for an LTCHM
``dam_layout`` (``ltchm`` alone is the default layout); ``--models`` adds e.g. the Table 4
ablations, which show where the time goes.

    python benchmarks/forward.py [--N 192] [--rounds 5] [--reps 3] [--sizes 256 512]
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

BASELINE = "cheng2020-attn"
MODELS = ("ltchm", "ltchm:table1", BASELINE)


def worker(spec: str, N: int, size: int, reps: int, tune: bool) -> dict[str, float]:
    from ltchm.runtime import tune_allocator
    from ltchm.zoo import get_model

    if tune:
        tune_allocator()
    torch.manual_seed(0)
    name, _, layout = spec.partition(":")
    model = get_model(name, N=N, **({"dam_layout": layout} if layout else {})).eval()
    x = torch.rand(1, 3, size, size)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(reps):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss
    return {"seconds": statistics.median(times), "peak_mib": peak / 1024}


def run(name: str, N: int, size: int, reps: int, tune: bool) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", name, str(N), str(size), str(reps)]
    if not tune:
        cmd.append("--no-tune")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--reps", type=int, default=3, help="timed forwards per run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="cheng2020-attn added")
    parser.add_argument("--no-tune", action="store_true", help="glibc's default allocator")
    parser.add_argument("--worker", nargs=4, metavar=("MODEL", "N", "SIZE", "REPS"))
    args = parser.parse_args()
    if args.worker:
        name, N, size, reps = args.worker
        print(json.dumps(worker(name, int(N), int(size), int(reps), not args.no_tune)))
        return 0

    models = list(dict.fromkeys([*args.models, BASELINE]))
    print(
        f"# forward, eval, batch 1, N={args.N}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"allocator {'glibc default' if args.no_tune else 'tuned (ltchm.runtime)'}, "
        f"{args.rounds} interleaved rounds x {args.reps} forwards\n"
    )
    print("| model | size | time (s), median | x cheng2020-attn, median (min-max) | peak MiB |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in models}
        for r in range(args.rounds):
            order = models[r % len(models) :] + models[: r % len(models)]
            for m in order:
                runs[m].append(run(m, args.N, size, args.reps, not args.no_tune))
        base = [x["seconds"] for x in runs[BASELINE]]
        for m in models:
            secs = [x["seconds"] for x in runs[m]]
            ratios = [s / b for s, b in zip(secs, base, strict=True)]
            peak = statistics.median(x["peak_mib"] for x in runs[m])
            print(
                f"| {m} | {size}² | {statistics.median(secs):.3f} | "
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
                f"{peak:.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
