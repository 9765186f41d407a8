"""``ltchm decompress-scene FILE.ltcs OUT.tif [--window ... | --bbox ...]``

Decodes an ``.ltcs`` file into a GeoTIFF or COG with the source's CRS, transform, size,
data type, nodata, masks and band order. A window (pixels) or bounding box (in the scene's
CRS) decodes only the tiles it needs; its GeoTIFF is georeferenced to that window.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from affine import Affine

from ltchm.cli_options import (
    add_config,
    add_device,
    add_model,
    add_overwrite,
    add_progress,
    add_tracking_uri,
    config_default,
)
from ltchm.codec.container import ContainerError
from ltchm.codec.identity import ModelIdentity
from ltchm.config import ConfigError, load_config
from pipeline.scenes.container import SceneHeader, SceneReader, header_of

if TYPE_CHECKING:
    from rasterio.windows import Window

__all__ = ["bbox_window", "decompress_scene", "main"]


def bbox_window(header: SceneHeader, bbox: tuple[float, float, float, float]) -> Window:
    """The smallest pixel window covering ``bbox`` (minx, miny, maxx, maxy), cut to the scene."""
    from rasterio.windows import Window

    minx, miny, maxx, maxy = bbox
    if not (minx < maxx and miny < maxy):
        raise ValueError(f"bbox needs minx < maxx and miny < maxy, got {list(bbox)}")
    inv = ~Affine(*header.transform)
    corners = [inv @ (x, y) for x in (minx, maxx) for y in (miny, maxy)]
    cols = [c for c, _ in corners]
    rows = [r for _, r in corners]
    # a pixel belongs to the box if any of it lies inside: floor the start, ceil the end
    c0 = max(0, math.floor(min(cols) + 1e-9))
    r0 = max(0, math.floor(min(rows) + 1e-9))
    c1 = min(header.width, math.ceil(max(cols) - 1e-9))
    r1 = min(header.height, math.ceil(max(rows) - 1e-9))
    if c1 <= c0 or r1 <= r0:
        t = Affine(*header.transform)
        x0, y0 = t @ (0, 0)
        x1, y1 = t @ (header.width, header.height)
        raise ValueError(
            f"bbox {list(bbox)} does not meet the scene (its bounds: "
            f"{min(x0, x1)} {min(y0, y1)} {max(x0, x1)} {max(y0, y1)})"
        )
    return Window(c0, r0, c1 - c0, r1 - r0)


def find_scene_model(
    header: SceneHeader,
    spec: str | None,
    config: str | Path | None,
    device: str,
    tracking_uri: str | None = None,
):
    """The model to decode with: ``spec`` if given, else the local store's copy, else the
    model the file names as its source (a registered version, a pretrained set, a
    checkpoint still at its path)."""
    from ltchm.codec.spec import load_model, load_recorded_model

    if header.family:  # per-tile rate points: each loaded when a tile first needs it
        from ltchm.codec.identity import identity_of
        from pipeline.scenes.targets import FamilyDecoder, resolve_family

        given = {}
        for s in resolve_family(spec, tracking_uri) if spec else []:
            m = load_model(s, config, device, tracking_uri)
            given[identity_of(m).weights_hash[:16]] = m

        def load(info):
            if info.weights_hash[:16] in given:
                return given[info.weights_hash[:16]]
            ident = ModelIdentity(info.name, float("nan"), info.config_hash, info.weights_hash)
            try:
                return load_recorded_model(ident, info.source, device, tracking_uri)
            except LookupError as exc:
                raise LookupError(f"a rate point of the scene was {exc}") from None

        return FamilyDecoder(header, load, device)
    if spec:
        return load_model(spec, config, device, tracking_uri)
    m = header.model
    identity = ModelIdentity(m.name, float("nan"), m.config_hash, m.weights_hash)
    try:
        return load_recorded_model(identity, m.source, device, tracking_uri)
    except LookupError as exc:
        raise LookupError(f"the scene was {exc}") from None


def decompress_scene(
    path: str | Path,
    out: str | Path,
    model,
    *,
    window: Window | None = None,
    fmt: Literal["cog", "gtiff"] = "cog",
    compress: Literal["zstd", "deflate"] = "zstd",
    resampling: str = "average",
    device: str | None = None,
    progress: bool = False,
) -> dict:
    """Decode ``path`` (or a window of it) into ``out``; returns what was done."""
    from pipeline.scenes.mosaic import SceneDecoder
    from pipeline.scenes.output import write_raster

    with SceneReader(path) as reader:
        decoder = SceneDecoder(reader, model, device)
        window = decoder.check_window(window or decoder.full_window())
        write_raster(
            decoder.blocks(window), reader.header, window, out, fmt, compress, resampling, progress
        )
        return {
            "window": [
                int(window.col_off),
                int(window.row_off),
                int(window.width),
                int(window.height),
            ],
            "tiles_read": reader.tiles_read,
            "tiles": len(reader),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ltchm decompress-scene",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", type=Path, help="an .ltcs file")
    parser.add_argument("out", type=Path, nargs="?", help="output .tif (GeoTIFF or COG)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--window",
        nargs=4,
        type=int,
        metavar=("COL_OFF", "ROW_OFF", "WIDTH", "HEIGHT"),
        help="decode this pixel window only (default: the whole scene)",
    )
    where.add_argument(
        "--bbox", nargs=4, type=float, metavar=("MINX", "MINY", "MAXX", "MAXY"),
        help="in the scene's CRS",
    )  # fmt: skip
    add_model(parser, required=False, help="default: the local model store's copy")
    add_config(parser, help="YAML: model config for a registry name; scenes section")
    add_device(parser)
    add_tracking_uri(parser)
    parser.add_argument(
        "--format",
        choices=("cog", "gtiff"),
        help=f"output layout {config_default('scenes.output_format')}",
    )
    parser.add_argument(
        "--compress",
        choices=("zstd", "deflate"),
        help=f"lossless compression of the output {config_default('scenes.output_compress')}",
    )
    parser.add_argument("--info", action="store_true", help="print the file's header and exit")
    add_progress(parser)
    add_overwrite(parser)
    args = parser.parse_args(argv)
    prog = "ltchm decompress-scene"
    from ltchm.codec.image import ModelMismatchError

    try:
        if args.info:
            print(json.dumps(header_of(args.input), indent=1))
            return 0
        if args.out is None:
            parser.error("OUT is required (or --info)")
        from ltchm.atomic import check_output

        check_output(args.out, args.input, suffixes=(".tif", ".tiff"), overwrite=args.overwrite)
        cfg = load_config(args.config).scenes
        with SceneReader(args.input) as r:
            header = r.header
        window = None
        if args.window:
            from rasterio.windows import Window

            window = Window(*args.window)
        elif args.bbox:
            window = bbox_window(header, tuple(args.bbox))
        model = find_scene_model(header, args.model, args.config, args.device, args.tracking_uri)
        t0 = time.perf_counter()
        done = decompress_scene(
            args.input,
            args.out,
            model,
            window=window,
            fmt=args.format or cfg.output_format,
            compress=args.compress or cfg.output_compress,
            resampling=cfg.overview_resampling,
            device=args.device,
            progress=not args.no_progress,
        )
    except FileNotFoundError as exc:
        print(f"{prog}: error: no such file or folder: {exc.filename or exc}", file=sys.stderr)
        return 1
    except (ContainerError, ModelMismatchError, ConfigError, LookupError, ValueError) as exc:
        text = str(exc)
        prefix = "" if str(args.input) in text else f"{args.input}: "
        print(f"{prog}: error: {prefix}{text}", file=sys.stderr)
        return 1
    w = done["window"]
    print(
        f"{args.input} -> {args.out}: window {w[0]} {w[1]} {w[2]} {w[3]}, "
        f"{done['tiles_read']} of {done['tiles']} tiles read, {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
