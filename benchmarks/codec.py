"""Encode/decode time of LTCHM (autoregressive, checkerboard) vs CompressAI's cheng2020-attn.

Same N, batch 1, CPU, on 256x256 UC-Merced images and a 1024x1024 DOTA crop. Each model is
first fitted briefly to the dev images (``--steps``) so that its distributions are those of
a trained codec (an untrained model's are uselessly wide). Reports per image size: encode
and decode seconds (median over images), the ratio of encode+decode to cheng2020-attn's, and
actual bytes (payload, and the whole .ltc file) against the bits the likelihoods estimate.

    python benchmarks/codec.py [--N 128] [--steps 150] [--images 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from ltchm.codec import ImageCodec
from ltchm.codec.container import unpack
from ltchm.imageio import list_images, read_image
from ltchm.losses import bpp_from_likelihoods
from ltchm.paths import default_images, dev_data
from ltchm.quickfit import quick_fit
from ltchm.runtime import tune_allocator
from ltchm.zoo import get_model

BASELINE = "cheng2020-attn"


def fitted(name: str, N: int, context: str | None, images, steps: int, init=None):
    torch.manual_seed(0)
    kw = {"N": N} | ({"context": context} if context else {})
    model = get_model(name, **kw)
    if init is not None:
        model.load_state_dict(
            {k: v for k, v in init.state_dict().items() if not k.endswith(".mask")}, strict=False
        )
    quick_fit(
        model, images, steps, lmbda=512, patch=128, batch=4, lr=1e-3 if init is None else 5e-4
    )
    model.update(force=True)
    return model.eval()


def estimate_bits(model, x: torch.Tensor) -> float:
    with torch.no_grad():
        out = model(x[None])
    return float(bpp_from_likelihoods(out["likelihoods"], 1))


def time_ltchm(model, xs) -> dict[str, float]:
    codec = ImageCodec(model, tile_size=0)
    enc, dec, payload, total, est = [], [], 0, 0, 0.0
    for x in xs:
        t = time.perf_counter()
        data = codec.encode(x)
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        codec.decode(data)
        dec.append(time.perf_counter() - t)
        f = unpack(data)
        payload += sum(len(s) for tile in f.tiles for s in tile.streams)
        total += len(data)
        est += estimate_bits(model, x)
    return {
        "encode": statistics.median(enc),
        "decode": statistics.median(dec),
        "payload_vs_est": 8 * payload / est,
        "file_vs_est": 8 * total / est,
    }


def time_compressai(model, xs) -> dict[str, float]:
    enc, dec, payload, est = [], [], 0, 0.0
    with torch.no_grad():
        for x in xs:
            t = time.perf_counter()
            out = model.compress(x[None])
            enc.append(time.perf_counter() - t)
            t = time.perf_counter()
            model.decompress(out["strings"], out["shape"])
            dec.append(time.perf_counter() - t)
            payload += sum(len(s[0]) for s in out["strings"])
            est += estimate_bits(model, x)
    r = 8 * payload / est
    return {
        "encode": statistics.median(enc),
        "decode": statistics.median(dec),
        "payload_vs_est": r,
        "file_vs_est": r,
    }


def padding_study(model, images) -> list[tuple[str, float, float, float]]:
    """Estimated bpp (over the original pixels) and PSNR of the original area, per padding."""
    import torch.nn.functional as F

    from ltchm.metrics import psnr

    out = []
    for mode in ("replicate", "reflect", "constant"):
        bits = pixels = 0.0
        quality = []
        for x in images:
            H, W = x.shape[-2:]
            ph, pw = (-H) % 64, (-W) % 64
            xp = F.pad(x[None], (0, pw, 0, ph), mode=mode)
            with torch.no_grad():
                o = model(xp)
            bits += float(bpp_from_likelihoods(o["likelihoods"], 1))
            pixels += H * W
            quality.append(psnr(o["x_hat"][0, :, :H, :W].clamp(0, 1), x))
        out.append((mode, bits / pixels, statistics.mean(quality), pixels))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=128)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--images", type=int, default=4, help="256x256 images to time")
    args = parser.parse_args()
    tune_allocator()
    train = [read_image(p) for p in list_images(default_images())]
    small = train[: args.images]
    dev = dev_data()
    if dev is not None and (dev / "dota" / "P0706.png").is_file():
        big = read_image(dev / "dota" / "P0706.png")[:, :1024, :1024]
        big_name = "DOTA P0706 crop"
    else:
        big = torch.cat([torch.cat(train[i : i + 4], 2) for i in range(0, 16, 4)], 1)[:, :1024]
        big_name = "UC-Merced mosaic"
    print(f"fitting each model for {args.steps} steps (N={args.N}) ...", file=sys.stderr)
    ar = fitted("ltchm", args.N, "autoregressive", train, args.steps)
    cb = fitted("ltchm", args.N, "checkerboard", train, args.steps // 2, init=ar)
    cheng = fitted(BASELINE, args.N, None, train, args.steps)
    rows = []
    for label, xs in ((f"256² (UC-Merced x{len(small)})", small), (f"1024² ({big_name})", [big])):
        base = time_compressai(cheng, xs)
        for name, r in (
            ("ltchm autoregressive", time_ltchm(ar, xs)),
            ("ltchm checkerboard", time_ltchm(cb, xs)),
            (BASELINE, base),
        ):
            ratio = (r["encode"] + r["decode"]) / (base["encode"] + base["decode"])
            rows.append((label, name, r, ratio))
    print(
        f"# codec, batch 1, CPU, N={args.N}, {torch.get_num_threads()} threads, "
        f"fitted {args.steps} steps\n"
    )
    print(
        "| image | model | encode (s) | decode (s) | enc+dec x cheng2020-attn | "
        "payload / estimate | file / estimate |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, name, r, ratio in rows:
        print(
            f"| {label} | {name} | {r['encode']:.2f} | {r['decode']:.2f} | {ratio:.2f} | "
            f"{r['payload_vs_est']:.4f} | {r['file_vs_est']:.4f} |"
        )
    # padding: sizes that are not multiples of 64 (DOTA when present, else cropped samples)
    if dev is not None and (dev / "dota").is_dir():
        odd = [read_image(p, drop_alpha=True) for p in sorted((dev / "dota").glob("*.png"))]
    else:
        odd = [x[:, :200, :230] for x in train]
    print("\n| padding | estimated bpp | PSNR of the original area (dB) |")
    print("|---|---|---|")
    study = padding_study(ar, odd)
    for mode, bpp, q, _ in study:
        print(f"| {mode} | {bpp:.4f} | {q:.2f} |")
    print(f"\n({len(odd)} images, {study[0][3] / 1e6:.2f} Mpixel, autoregressive model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
