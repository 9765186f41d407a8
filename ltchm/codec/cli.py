"""``ltchm encode``, ``ltchm decode`` and ``ltchm eval-images``."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltchm.cli_options import (
    add_config,
    add_device,
    add_model,
    add_overwrite,
    add_tracking_uri,
)

if TYPE_CHECKING:
    import torch

    from ltchm.codec.container import LtcFile
    from ltchm.codec.image import ImageCodec

# torch and the codec load after the arguments are parsed: --help and usage errors are instant

__all__ = ["decode_main", "encode_main", "eval_images_main"]


# what ltchm.imageio.write_image writes an 8-bit RGB image as
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".webp", ".ppm")


def _model_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    add_model(parser, required=required)
    add_config(parser, help="config file for a registry name (model, lambda)")
    add_device(parser)
    add_tracking_uri(parser)


def encode_main(argv: list[str] | None = None) -> int:
    """``ltchm encode IMAGE OUT.ltc --model SPEC``"""
    parser = argparse.ArgumentParser(prog="ltchm encode", description="Compress an RGB image.")
    parser.add_argument("image", type=Path, help="an 8-bit RGB image (PNG, JPEG, TIFF, ...)")
    parser.add_argument("out", type=Path, help="the .ltc file to write")
    _model_args(parser)
    parser.add_argument("--tile-size", type=int, default=1024, help="code larger images in tiles")
    parser.add_argument("--drop-alpha", action="store_true", help="accept RGBA, drop alpha")
    add_overwrite(parser)
    args = parser.parse_args(argv)
    from ltchm.atomic import atomic_write_bytes, check_output
    from ltchm.codec.container import bits_per_pixel
    from ltchm.codec.image import ImageCodec
    from ltchm.codec.spec import load_model, spec_source
    from ltchm.codec.store import store_model
    from ltchm.imageio import is_georeferenced, read_image

    check_output(args.out, args.image, overwrite=args.overwrite)
    import torch

    x = read_image(args.image, drop_alpha=args.drop_alpha, dtype=torch.uint8)
    if is_georeferenced(args.image):
        print(
            f"note: {args.image} is georeferenced; an .ltc keeps the pixels only. "
            "'ltchm compress-scenes' keeps CRS, transform, bands and bit depth."
        )
    model = load_model(args.model, args.config, args.device, args.tracking_uri)
    source = spec_source(args.model, args.tracking_uri)
    codec = ImageCodec(model, tile_size=args.tile_size, device=args.device, source=source)
    t0 = time.perf_counter()
    data = codec.encode(x)
    seconds = time.perf_counter() - t0
    atomic_write_bytes(args.out, data)
    # remember the model so that 'ltchm decode' finds it by the file's weights hash
    store_model(codec.model, codec.identity.weights_hash)
    H, W = x.shape[-2:]
    print(
        f"{args.image} -> {args.out}: {W}x{H}, {len(data)} bytes, "
        f"{bits_per_pixel(len(data), H, W):.4f} bpp, {seconds:.2f} s, {codec.identity.short()}"
    )
    return 0


def decode_main(argv: list[str] | None = None) -> int:
    """``ltchm decode IN.ltc OUT.png|.tif`` or ``ltchm decode IN.ltc --info``"""
    parser = argparse.ArgumentParser(
        prog="ltchm decode",
        description="Decompress an .ltc file. Without --model, the model is found from the "
        "file: the local model store by weights hash, else the source the file records (a "
        "registered version with its tracking store, a pretrained set, a checkpoint path).",
    )
    parser.add_argument("input", type=Path, help="an .ltc file")
    parser.add_argument("out", type=Path, nargs="?", help=".png or .tif")
    parser.add_argument(
        "--info", action="store_true", help="print what the file records (JSON) and exit"
    )
    _model_args(parser, required=False)
    add_overwrite(parser)
    args = parser.parse_args(argv)
    if args.out is None and not args.info:
        parser.error("the output image is required (or --info)")
    from ltchm.atomic import check_output
    from ltchm.codec.container import ContainerError, unpack

    if args.out is not None:
        check_output(args.out, args.input, suffixes=IMAGE_SUFFIXES, overwrite=args.overwrite)
    data = args.input.read_bytes()
    try:
        f = unpack(data)
    except ContainerError as exc:
        print(f"ltchm decode: {args.input}: {exc}", file=sys.stderr)
        return 1
    if args.info:
        print(json.dumps(file_info(f, len(data)), indent=2))
        return 0
    import torch

    from ltchm.codec.image import ImageCodec
    from ltchm.codec.spec import load_model, load_recorded_model
    from ltchm.imageio import write_image

    if args.model:
        model = load_model(args.model, args.config, args.device, args.tracking_uri)
    else:
        try:
            model = load_recorded_model(f.identity, f.source, args.device, args.tracking_uri)
        except LookupError as exc:
            print(f"ltchm decode: {args.input} was {exc}", file=sys.stderr)
            return 1
    codec = ImageCodec(model, device=args.device)
    t0 = time.perf_counter()
    x = codec.decode(data, dtype=torch.uint8)
    seconds = time.perf_counter() - t0
    write_image(args.out, x)
    print(f"{args.input} -> {args.out}: {x.shape[2]}x{x.shape[1]}, {seconds:.2f} s")
    return 0


def file_info(f: LtcFile, nbytes: int) -> dict[str, Any]:
    """What an ``.ltc`` file records, for ``ltchm decode --info``."""
    from ltchm.codec.container import bits_per_pixel  # torch-free, unlike ltchm.codec.image

    ident = f.identity
    bpp = bits_per_pixel(nbytes, f.height, f.width)
    return {
        "model": {
            "name": ident.name,
            "lmbda": None if math.isnan(ident.lmbda) else ident.lmbda,
            "config_hash": ident.config_hash,
            "weights_hash": ident.weights_hash,
            "source": f.source or None,
            "context": f.context,
        },
        "width": f.width,
        "height": f.height,
        "tile_size": f.tile_size,
        "tiles": len(f.tiles),
        "bytes": nbytes,
        "bpp": None if math.isnan(bpp) else round(bpp, 6),
    }


def estimated_bpp(codec: ImageCodec, x: torch.Tensor) -> float:
    """bpp the model's likelihoods predict for ``x`` (padded as the codec pads it)."""
    import torch

    from ltchm.losses import bpp_from_likelihoods

    H, W = x.shape[-2:]
    with torch.no_grad():
        out = codec.model(codec.pad(x.to(codec.device))[None])
    return float(bpp_from_likelihoods(out["likelihoods"], H * W))


def eval_images_main(argv: list[str] | None = None) -> int:
    """``ltchm eval-images DIR --model SPEC``"""
    parser = argparse.ArgumentParser(
        prog="ltchm eval-images",
        description="Per image: bpp of the real file, bpp the model estimates, PSNR, MS-SSIM.",
    )
    parser.add_argument("folder", type=Path, help="a folder of 8-bit RGB images")
    _model_args(parser)
    parser.add_argument("--csv", type=Path, help="also write the table as CSV")
    parser.add_argument("--drop-alpha", action="store_true", help="accept RGBA, drop alpha")
    args = parser.parse_args(argv)
    from ltchm.atomic import atomic_write_text
    from ltchm.codec.container import bits_per_pixel
    from ltchm.codec.image import ImageCodec
    from ltchm.codec.spec import load_model
    from ltchm.imageio import list_images, read_image
    from ltchm.metrics import ms_ssim, psnr

    paths = list_images(args.folder)
    if not paths:
        print(f"ltchm eval-images: no images in {args.folder}", file=sys.stderr)
        return 1
    codec = ImageCodec(
        load_model(args.model, args.config, args.device, args.tracking_uri), device=args.device
    )
    rows = []
    header = (
        f"{'image':<28} {'size':>9} {'bytes':>8} {'bpp':>7} {'est.bpp':>8} {'PSNR':>7} "
        f"{'MS-SSIM':>8}"
    )
    print(header)
    print("-" * len(header))
    for path in paths:
        x = read_image(path, drop_alpha=args.drop_alpha)
        H, W = x.shape[-2:]
        data = codec.encode(x)
        x_hat = codec.decode(data)
        q = psnr(x_hat, x)
        m = ms_ssim(x_hat, x) if min(H, W) > 160 else math.nan
        row: dict[str, Any] = {
            "image": path.name,
            "width": W,
            "height": H,
            "bytes": len(data),
            "bpp": bits_per_pixel(len(data), H, W),
            "bpp_estimated": estimated_bpp(codec, x),
            "psnr": q,
            "ms_ssim": m,
        }
        rows.append(row)
        print(
            f"{path.name:<28} {f'{W}x{H}':>9} {len(data):>8} {row['bpp']:>7.4f} "
            f"{row['bpp_estimated']:>8.4f} {q:>7.2f} {m:>8.4f}"
        )
    print("-" * len(header))
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("bpp", "bpp_estimated", "psnr")}
    print(
        f"{'mean':<28} {'':>9} {'':>8} {mean['bpp']:>7.4f} {mean['bpp_estimated']:>8.4f} "
        f"{mean['psnr']:>7.2f}"
    )
    print("bpp: measured from the .ltc file's bytes (header included); est.bpp: likelihoods.")
    if args.csv:
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(args.csv, buf.getvalue())
    return 0
