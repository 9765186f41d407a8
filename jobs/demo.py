"""``ltchm demo``: the main job end to end on the embedded defaults.

Fits a small LTCHM on the UC-Merced images briefly, then reports, per image, the bit rate
the entropy model estimates from its likelihoods and the PSNR of the reconstruction.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from ltchm.config import load_config
from ltchm.imageio import list_images, read_image
from ltchm.losses import bpp_from_likelihoods
from ltchm.metrics import psnr
from ltchm.paths import REPO_ROOT, default_images
from ltchm.quickfit import quick_fit
from ltchm.runtime import tune_allocator
from ltchm.zoo import model_from_config

__all__ = ["main"]


def _pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    H, W = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, (-W) % multiple, 0, (-H) % multiple), mode="replicate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ltchm demo", description=__doc__)
    parser.add_argument("--data", type=Path, default=None, help="folder of RGB images")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "lambda_512.yaml")
    parser.add_argument("--N", type=int, default=64, help="channels (demo-sized; paper: 192)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    tune_allocator()
    torch.manual_seed(args.seed)
    data = args.data or default_images()
    cfg = load_config(args.config, {"model.N": args.N})
    paths = list_images(data)
    if not paths:
        raise SystemExit(f"ltchm demo: no images in {data}")
    images = [read_image(p) for p in paths]
    model = model_from_config(cfg.model)
    print(
        f"Fitting {cfg.model.name} (N={cfg.model.N}, lambda={cfg.loss.lmbda:g}) on {len(images)} "
        f"images from {data} for {args.steps} steps (demo-sized; see 'ltchm train')"
    )
    t0 = time.perf_counter()
    history = quick_fit(
        model, images, args.steps, cfg.loss.lmbda, patch=args.patch, lr=1e-3, progress=True
    )
    print(
        f"  loss {history[0]['loss']:.2f} -> {history[-1]['loss']:.2f} "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    print()
    header = f"{'image':<28} {'size':>9} {'bpp (estimated)':>16} {'PSNR (dB)':>10}"
    print(header)
    print("-" * len(header))
    bpps, psnrs = [], []
    model.eval()
    with torch.inference_mode():
        for path, img in zip(paths, images, strict=True):
            H, W = img.shape[-2:]
            x = _pad(img[None], model.stride)
            out = model(x)
            # The rate of the padded image, charged to the original pixels.
            bpp = float(bpp_from_likelihoods(out["likelihoods"], H * W))
            q = psnr(out["x_hat"][0, :, :H, :W].clamp(0, 1), img)
            bpps.append(bpp)
            psnrs.append(q)
            print(f"{path.name:<28} {f'{W}x{H}':>9} {bpp:>16.4f} {q:>10.2f}")
    print("-" * len(header))
    mean_psnr = sum(psnrs) / len(psnrs) if all(map(math.isfinite, psnrs)) else math.inf
    print(f"{'mean':<28} {'':>9} {sum(bpps) / len(bpps):>16.4f} {mean_psnr:>10.2f}")
    print("\nbpp is estimated from the entropy model's likelihoods, not measured from a file.")
    return 0
