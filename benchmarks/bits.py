"""Where a trained LTCHM's bits go, image by image, with real bytes.

For each model and image: the size of the ``.ltc`` file the image codec writes against the
rate the model's likelihoods estimate (the difference is the container and the arithmetic
coder), the estimate split into the latent y and the hyper-latent z, and what the hyperprior
is worth: y's estimated bits when the entropy model gets the hyper-synthesis of z (as coded)
and when it gets that of z's learned medians instead, i.e. no information from z. A
hyperprior that saves little of y's rate carries little of the image.

    python benchmarks/bits.py --models A.pt B.pt --data SHARDS_OR_FOLDER [--max-images 6]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ltchm.codec.checkpoint import load_checkpoint
from ltchm.codec.image import ImageCodec
from ltchm.entropy.mixture import mixture_likelihood
from ltchm.evaluation.data import open_images
from ltchm.evaluation.metrics import to_tensor
from ltchm.models.ltchm import LTCHM


def _bits(likelihoods: Tensor) -> float:
    return float(-likelihoods.log2().sum())


@torch.no_grad()
def measure(codec: ImageCodec, x: Tensor) -> dict[str, float]:
    """bpp of the file, of the estimate (y, z) and of y without the hyperprior, and PSNR."""
    model = codec.model
    if not isinstance(model, LTCHM):
        raise SystemExit(f"bits.py measures LTCHM models, not {type(model).__name__}")
    _, H, W = x.shape
    data = codec.encode(x)
    decoded = codec.decode(data, torch.uint8).float().div_(255.0)
    padded = codec.pad(x)[None]  # as the codec pads before coding
    y = model.g_a(padded)
    y_hat = torch.round(y)
    z = model.h_a(y)
    z_hat, z_likelihoods = model.entropy_bottleneck(z)
    ctx = model.context_model(y_hat)
    # the middle column of CompressAI's learned quantiles is each channel's median; z coded as
    # all medians (every symbol 0) decodes to exactly these values, unrounded
    medians = model.entropy_bottleneck.quantiles[:, 0, 1].reshape(1, -1, 1, 1).expand_as(z_hat)

    def y_bits(z_in: Tensor) -> float:
        params = model.mixture_params(ctx, model.h_s(z_in))
        return _bits(mixture_likelihood(y_hat, params, model.mixture))

    px = H * W
    mse = float(((decoded - x) ** 2).mean())
    return {
        "file": 8 * len(data) / px,
        "y": y_bits(z_hat) / px,
        "z": _bits(z_likelihoods) / px,
        "y_no_hyper": y_bits(medians) / px,
        "psnr": -10 * math.log10(mse) if mse > 0 else math.inf,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="LTCHM checkpoints")
    parser.add_argument("--data", required=True, help="a folder of images or test shards")
    parser.add_argument("--max-images", type=int, default=None)
    args = parser.parse_args(argv)
    images = [(name, to_tensor(img)) for name, img in open_images(args.data, args.max_images)]
    # runs differ in their folders, not their file names: label each by what sets it apart
    common = os.path.commonpath([os.path.abspath(p) for p in args.models])
    print("| model | image | file bpp | estimate: y + z bpp | file - estimate (bytes) "
          "| z share | y without the hyperprior | PSNR (dB) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for path in args.models:
        label = os.path.relpath(os.path.abspath(path), common)
        label = Path(path).name if label == "." else label
        codec = ImageCodec(load_checkpoint(path), tile_size=0)
        codec.model.eval()
        totals = {"y": 0.0, "z": 0.0, "y_no_hyper": 0.0}
        for name, x in images:
            m = measure(codec, x)
            px = x.shape[1] * x.shape[2]
            for k in totals:
                totals[k] += m[k] * px
            est = m["y"] + m["z"]
            print(
                f"| {label} | {name} | {m['file']:.4f} | {m['y']:.4f} + {m['z']:.4f} "
                f"| {(m['file'] - est) * px / 8:.0f} | {m['z'] / est:.1%} "
                f"| {m['y_no_hyper'] / m['y'] - 1:+.1%} | {m['psnr']:.2f} |",
                flush=True,
            )
        y, z, y_alone = totals["y"], totals["z"], totals["y_no_hyper"]
        share, saved = z / (y + z), y_alone / y - 1
        print(f"| {label} | all (pixel-weighted) | | | | {share:.1%} | {saved:+.1%} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
