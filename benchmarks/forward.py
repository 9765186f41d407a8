"""Forward time and peak memory of LTCHM against CompressAI's cheng2020-attn at the same N.

Eval mode, no grad, batch 1, at 256x256 and 512x512. Each (model, size) runs in a fresh
subprocess so its peak resident memory is its own; time is the median of ``--reps`` runs
after one warm-up. The Table 4 ablations are measured too: they show where LTCHM's time goes.

    python benchmarks/forward.py [--N 192] [--reps 5] [--sizes 256 512]
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
MODELS = ("ltchm", "ltchm-baseline", "ltchm-dam", "ltchm-hpham", BASELINE)


def worker(name: str, N: int, size: int, reps: int, tune: bool) -> dict[str, float]:
    from ltchm.runtime import tune_allocator
    from ltchm.zoo import get_model

    if tune:
        tune_allocator()
    torch.manual_seed(0)
    model = get_model(name, N=N).eval()
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
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--no-tune", action="store_true", help="glibc's default allocator")
    parser.add_argument("--worker", nargs=4, metavar=("MODEL", "N", "SIZE", "REPS"))
    args = parser.parse_args()
    if args.worker:
        name, N, size, reps = args.worker
        print(json.dumps(worker(name, int(N), int(size), int(reps), not args.no_tune)))
        return 0

    print(
        f"# forward, eval, batch 1, N={args.N}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"allocator {'glibc default' if args.no_tune else 'tuned (ltchm.runtime)'}\n"
    )
    print("| model | size | time (s) | x cheng2020-attn | peak memory (MiB) |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        results = {m: run(m, args.N, size, args.reps, not args.no_tune) for m in MODELS}
        base = results[BASELINE]["seconds"]
        for m in MODELS:
            r = results[m]
            print(
                f"| {m} | {size}² | {r['seconds']:.3f} | {r['seconds'] / base:.2f} | "
                f"{r['peak_mib']:.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
