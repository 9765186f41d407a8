"""Coding time and peak memory of trained LTCHM models against the width of their windows.

A high-rate model predicts wide distributions (large scales, mixture components far apart).
The coder gives each element a window covering every component's mean +- TAIL scales, up to
MAX_WIDTH bins, and evaluates every bin; so its cost follows the windows, not the pixels.
For each model and image, each in a fresh process: the mean window (bins per element), the
encode and decode seconds and the process's peak RSS, for the coder as it is (rows computed
``ROW_ENTRIES`` at a time) and for the baseline ``--rows-at-once``: every run of equal
widths computed whole (``ROW_ENTRIES`` unbounded). The coder before chunking did that and
also kept every run's rows until the end of the image, so it needed at least the baseline's
memory. A process over ``--cap-gib`` is stopped and reported as such.

    python benchmarks/windows.py --models A.pt B.pt --data <test shard or folder>
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def worker(model: str, data: str, image: str, rows_at_once: bool, cap_gib: float) -> None:
    """One model on one image, in this process; prints one JSON line."""

    def watch() -> None:
        while True:
            if _rss_mib() > cap_gib * 1024:
                print(json.dumps({"stopped": f"over {cap_gib:g} GiB"}), flush=True)
                os._exit(3)
            time.sleep(0.02)

    import numpy as np
    import torch

    from ltchm.codec import ImageCodec, load_model
    from ltchm.entropy import coding, latent
    from ltchm.evaluation.data import open_images
    from ltchm.evaluation.metrics import to_tensor

    if rows_at_once:
        coding.ROW_ENTRIES = 1 << 62
    img = next(im for name, im in open_images(data) if name == image)
    codec = ImageCodec(load_model(model, None, device="cpu"), device="cpu")
    x = to_tensor(img)
    bins, elements = [0], [0]
    windows = coding.windows  # what latent imported

    def counting(*args: Any) -> Any:
        lo, width = windows(*args)
        bins[0] += int(width.sum())
        elements[0] += int(width.numel())
        return lo, width

    setattr(latent, "windows", counting)  # noqa: B010  # counts the bins; changes nothing
    threading.Thread(target=watch, daemon=True).start()
    with torch.no_grad():
        t = time.perf_counter()
        data_bytes = codec.encode(x)
        enc = time.perf_counter() - t
        bins_enc, elements_enc = bins[0], elements[0]
        t = time.perf_counter()
        y = codec.decode(data_bytes)
        dec = time.perf_counter() - t
    mse = float(((y - x.float()) ** 2).mean())
    h, w = img.shape[:2]
    result = {
        "bpp": 8 * len(data_bytes) / (h * w),
        "psnr": float(10 * np.log10(1 / mse)),
        "mean_window": bins_enc / max(1, elements_enc),
        "encode_s": enc,
        "decode_s": dec,
        "mpx": h * w / 1e6,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    }
    print(json.dumps(result), flush=True)


def measure(args: argparse.Namespace, model: str, image: str, rows_at_once: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", model, image, "--data", args.data]
    cmd += ["--cap-gib", str(args.cap_gib)] + (["--rows-at-once"] if rows_at_once else [])
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = (
        json.loads(lines[-1]) if lines else {"stopped": f"exit {proc.returncode}"}
    )
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", help="LTCHM checkpoints")
    p.add_argument("--data", required=True, help="a test shard or a folder of images")
    p.add_argument("--images", nargs="*", help="image names (default: all)")
    p.add_argument("--cap-gib", type=float, default=12.0, help="stop a process above this")
    p.add_argument("--rows-at-once", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", nargs=2, metavar=("MODEL", "IMAGE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker[0], args.data, args.worker[1], args.rows_at_once, args.cap_gib)
        return 0
    if not args.models:
        p.error("--models is required")
    from ltchm.evaluation.data import open_images

    names = args.images or [name for name, _ in open_images(args.data)]
    common = os.path.commonpath([os.path.abspath(m) for m in args.models])
    print("| model | image | Mpx | bpp | PSNR (dB) | mean window (bins) | coder | encode s "
          "| decode s | peak RSS (MiB) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|")
    for model in args.models:
        label = str(Path(os.path.abspath(model)).relative_to(common)) if common else model
        for image in names:
            for at_once in (False, True):
                r = measure(args, model, image, at_once)
                coder = "rows at once (baseline)" if at_once else "chunked"
                if "stopped" in r:
                    print(f"| {label} | {image} | | | | | {coder} | {r['stopped']} | | "
                          f"> {args.cap_gib * 1024:.0f} |", flush=True)  # fmt: skip
                    continue
                print(f"| {label} | {image} | {r['mpx']:.2f} | {r['bpp']:.3f} | "
                      f"{r['psnr']:.2f} | {r['mean_window']:.0f} | {coder} | "
                      f"{r['encode_s']:.1f} | {r['decode_s']:.1f} | {r['peak_mib']:.0f} |",
                      flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
