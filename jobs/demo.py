"""``ltchm demo``: the main job end to end on the embedded defaults.

Fits a small LTCHM on the UC-Merced images briefly, compresses every image into a real
``.ltc`` file, decodes it, and reports per image the bits per pixel of the file, the bits the
entropy model estimates from its likelihoods, and the PSNR of the decoded image.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from ltchm.atomic import atomic_write_bytes
from ltchm.codec import ImageCodec, bits_per_pixel, save_checkpoint
from ltchm.codec.cli import estimated_bpp
from ltchm.config import load_config
from ltchm.imageio import list_images, read_image, write_image
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
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
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
    model.update(force=True)
    model.lmbda = cfg.loss.lmbda
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, args.out / "model.pt", lmbda=cfg.loss.lmbda)
    codec = ImageCodec(model)
    print()
    header = (
        f"{'image':<28} {'size':>9} {'bytes':>7} {'bpp (file)':>10} {'bpp (estimated)':>16} "
        f"{'PSNR (dB)':>10}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for path, img in zip(paths, images, strict=True):
        H, W = img.shape[-2:]
        data = codec.encode(img)
        atomic_write_bytes(args.out / f"{path.stem}.ltc", data)
        decoded = codec.decode(data)
        write_image(args.out / f"{path.stem}.png", decoded)
        row = (bits_per_pixel(len(data), H, W), estimated_bpp(codec, img), psnr(decoded, img))
        rows.append(row)
        print(
            f"{path.name:<28} {f'{W}x{H}':>9} {len(data):>7} {row[0]:>10.4f} {row[1]:>16.4f} "
            f"{row[2]:>10.2f}"
        )
    print("-" * len(header))
    mean = [sum(r[i] for r in rows) / len(rows) for i in range(3)]
    q = mean[2] if all(math.isfinite(r[2]) for r in rows) else math.inf
    print(f"{'mean':<28} {'':>9} {'':>7} {mean[0]:>10.4f} {mean[1]:>16.4f} {q:>10.2f}")
    print(
        f"\nbpp (file): measured from the .ltc files' bytes; bpp (estimated): the entropy "
        f"model's likelihoods. Files, decoded images and the model: {args.out}"
    )
    return 0
