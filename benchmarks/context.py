"""Checkerboard against autoregressive context: the rate-distortion cost of the parallel
context and the decode speed of both, on trained models of the CPU recipe.

From the CPU recipe's trained model of each rate point (``benchmarks/convergence.py run``;
checkerboard), two models are fine-tuned for the same number of steps with the same data
order, one keeping the checkerboard context and one switched to the paper's autoregressive
context (same parameters, other mask: the context model re-learns what it may see). Both are
evaluated with real bytes by ``ltchm evaluate`` on the test split (never trained on):
BD-rate of checkerboard against autoregressive on PSNR and MS-SSIM. Decode time is measured
on the same machine and thread count for both, on the test images and on a larger image
(a mosaic of them), after one warm-up decode.

    python benchmarks/context.py --from /path/to/convergence/runs --shards SHARDS \\
        [--lambdas 128,512,2048] [--steps 300] [--work /tmp/context]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from convergence import _test_data, write_config

from ltchm.paths import REPO_ROOT

CONTEXTS = ("checkerboard", "autoregressive")


def finetune(init: Path, lmbda: int, context: str, steps: int, shards: Path, work: Path) -> Path:
    out = work / context / f"lambda_{lmbda}"
    model = out / f"lambda_{lmbda}" / "model.pt"
    if model.is_file():
        return model
    cfg = write_config(
        work / f"{context}_{lmbda}.yaml",
        REPO_ROOT / "configs" / "cpu.yaml",
        {
            "model.context": context,
            "train.steps": steps,
            "train.init_from": str(init),
            "train.val_every": steps,
            "train.checkpoint_every": steps,
            "train.snapshot_every": None,
            "tracking.system_metrics": False,
        },
    )
    cmd = [sys.executable, "-m", "ltchm", "train", "--lambdas", str(lmbda), "--config", str(cfg)]
    cmd += ["--shards", str(shards), "--out", str(out), "--no-progress"]
    cmd += ["--tracking-uri", f"sqlite:///{work / 'mlruns.db'}"]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    return model


def evaluate(models: dict[str, list[Path]], data: str, out: Path) -> list[dict[str, Any]]:
    if not (out / "rd.json").is_file():
        cmd = [sys.executable, "-m", "ltchm", "evaluate", "--data", data, "--out", str(out)]
        cmd += ["--models", *(f"{name}={m}" for name, ms in models.items() for m in ms)]
        cmd += ["--codecs", "jpeg", "--no-lpips", "--no-complexity", "--no-mlflow", "--quiet"]
        cmd += ["--device", "cpu"]
        subprocess.run(cmd, check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    return list(json.loads((out / "rd.json").read_text()))


def decode_seconds(model_path: Path, images: list[Any], repeats: int = 2) -> dict[str, float]:
    """Best-of-``repeats`` encode and decode wall time over ``images``, per megapixel."""
    from ltchm.codec import ImageCodec, load_checkpoint

    codec = ImageCodec(load_checkpoint(model_path), tile_size=0)
    codec.decode(codec.encode(images[0]))  # warm-up
    pixels = sum(x.shape[1] * x.shape[2] for x in images) / 1e6
    best_enc = best_dec = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        files = [codec.encode(x) for x in images]
        t1 = time.perf_counter()
        for f in files:
            codec.decode(f)
        t2 = time.perf_counter()
        best_enc, best_dec = min(best_enc, t1 - t0), min(best_dec, t2 - t1)
    return {"encode_s_per_mpx": best_enc / pixels, "decode_s_per_mpx": best_dec / pixels}


def _images(shards: Path) -> list[Any]:
    import torch

    from pipeline.loader import iter_images

    tests = [x for x, _ in iter_images(_test_data(shards), split="test")]
    # a larger image: the test images side by side (cropped to a common height)
    h = min(x.shape[1] for x in tests)
    mosaic = torch.cat([x[:, :h] for x in tests[:4]], dim=2)
    return [tests, [mosaic]]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="runs", type=Path, required=True,
                   help="convergence runs folder with lambda_<λ>/model.pt")  # fmt: skip
    p.add_argument("--shards", type=Path, required=True)
    p.add_argument("--lambdas", default="128,512,2048")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--work", type=Path, default=Path("/tmp/context"))
    args = p.parse_args()
    import torch

    torch.set_num_threads(2)
    lambdas = [int(v) for v in args.lambdas.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    models: dict[str, list[Path]] = {c: [] for c in CONTEXTS}
    for lmbda in lambdas:
        init = args.runs / f"lambda_{lmbda}" / "model.pt"
        for context in CONTEXTS:
            models[context].append(
                finetune(init, lmbda, context, args.steps, args.shards, args.work)
            )
    rd = evaluate({f"ltchm-{c}": ms for c, ms in models.items()}, _test_data(args.shards),
                  args.work / "eval")  # fmt: skip
    from ltchm.evaluation.bd import bd_table

    bd = next(
        r for r in bd_table(rd, anchor="ltchm-autoregressive") if r["codec"] == "ltchm-checkerboard"
    )
    tests, mosaic = _images(args.shards)
    timing = {
        c: {
            "test images": decode_seconds(
                models[c][lambdas.index(512) if 512 in lambdas else 0], tests
            ),
            "mosaic": decode_seconds(
                models[c][lambdas.index(512) if 512 in lambdas else 0], mosaic
            ),
        }
        for c in CONTEXTS
    }
    lmbda_of = {str(m): lm for ms in models.values() for lm, m in zip(lambdas, ms, strict=True)}
    points = [
        {"lambda": lmbda_of.get(str(r["setting"]))}
        | {k: r[k] for k in ("codec", "bpp", "psnr", "ms_ssim")}
        for r in rd
        if r["codec"].startswith("ltchm")
    ]
    result = {
        "steps": args.steps,
        "lambdas": lambdas,
        "points": points,
        "bd_rate_checkerboard_vs_autoregressive": {
            "psnr": bd["bd_rate_psnr"],
            "ms_ssim": bd["bd_rate_ms_ssim_db"],
            "notes": bd["notes"],
        },
        "timing": timing,
        "mosaic_size": list(mosaic[0].shape[1:]),
        "test_images": len(tests),
    }
    (args.work / "context.json").write_text(json.dumps(result, indent=1))
    print("| context | λ | bpp | PSNR (dB) | MS-SSIM |\n|---|---|---|---|---|")
    for r in points:
        print(
            f"| {r['codec']} | {r['lambda']} | {r['bpp']:.4f} | {r['psnr']:.2f} "
            f"| {r['ms_ssim']:.4f} |"
        )
    b = result["bd_rate_checkerboard_vs_autoregressive"]
    print(
        f"\nBD-rate, checkerboard against autoregressive: PSNR {b['psnr']:+.1f} %, "
        f"MS-SSIM {b['ms_ssim']:+.1f} % {b['notes'] or ''}"
    )
    print("\n| context | images | encode s/MPx | decode s/MPx |\n|---|---|---|---|")
    for c in CONTEXTS:
        for name, t in timing[c].items():
            print(f"| {c} | {name} | {t['encode_s_per_mpx']:.2f} | {t['decode_s_per_mpx']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
