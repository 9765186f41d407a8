"""Peak memory of the platform's commands against image size: generated images from 4 Mpx to
1 Gpx, small on disk (a sparse tiled GeoTIFF, an all-zero PNG), each command run alone in its
own process, peak RSS from ``wait4``.

* ``preprocess`` (``--local``: the worker's decoding in the measured process) on both; its
  baseline in the same run is the same command with ``max_worker_memory`` and
  ``window_reads_above`` beyond any image: the whole-image decoding every image had before.
* ``compress-scenes`` (``--local``) and ``decompress-scene`` on the GeoTIFF; their baseline is
  the naive reading of that GeoTIFF whole (``rasterio`` ``read()``).
* ``encode`` and ``decode`` on the PNG (the single-image codec, up to Pillow's 179 Mpx);
  their baseline is the PNG decoded whole by Pillow.

The codec is an untrained ``ltchm-baseline`` (N = 8, checkerboard): memory, not quality.

    python benchmarks/memory.py [--sizes 2048,8192,32768] [--commands preprocess,scenes,codec]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_GEN = r"""
import sys, numpy as np, rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from PIL import Image
kind, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if kind == "tif":
    prof = dict(driver="GTiff", height=n, width=n, count=3, dtype="uint8", crs="EPSG:32633",
                transform=from_origin(500000, 4600000, 1, 1), tiled=True, blockxsize=512,
                blockysize=512, compress="deflate", sparse_ok=True, nodata=0)
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **prof) as d:  # content in two corners, the rest sparse
        d.write(rng.integers(1, 255, (3, 512, 512), dtype=np.uint8), window=Window(0, 0, 512, 512))
        d.write(rng.integers(1, 255, (3, 512, 512), dtype=np.uint8),
                window=Window(n - 512, n - 512, 512, 512))
else:
    Image.MAX_IMAGE_PIXELS = None
    Image.fromarray(np.zeros((n, n, 3), np.uint8)).save(path, compress_level=9)
"""


def peak_rss(cmd: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MiB, seconds, exit code) of a command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


_MODEL = r"""
import sys, torch
from ltchm.codec import save_checkpoint
from ltchm.zoo import get_model
torch.manual_seed(0)
save_checkpoint(get_model("ltchm-baseline", N=8, context="checkerboard"), sys.argv[1], lmbda=512)
"""

_WHOLE_TIF = "import sys, rasterio; rasterio.open(sys.argv[1]).read()"
_WHOLE_PNG = (
    "import sys; from PIL import Image; Image.MAX_IMAGE_PIXELS = None; "
    "Image.open(sys.argv[1]).load()"
)


def _run(cmd: list[str]) -> dict[str, float | int]:
    mib, secs, rc = peak_rss(cmd)
    return {"peak_mib": round(mib), "seconds": round(secs, 1), "exit": rc}


def _scenes(src: Path, model: Path, work: Path) -> dict[str, dict[str, float | int]]:
    """compress-scenes and decompress-scene of one GeoTIFF, and its whole read."""
    out = work / "ltcs"
    ltchm = [sys.executable, "-m", "ltchm"]
    cmd = [*ltchm, "compress-scenes", str(src), "--out", str(out), "--model", str(model)]
    res = {"compress-scenes": _run([*cmd, "--local", "--no-progress", "--no-verify"])}
    ltcs = next(out.glob("*.ltcs"), None)
    if ltcs is not None:
        res["decompress-scene"] = _run(
            [*ltchm, "decompress-scene", str(ltcs), str(work / "back.tif"), "--no-progress"]
        )
    res["whole read"] = _run([sys.executable, "-c", _WHOLE_TIF, str(src)])
    return res


def _codec(src: Path, model: Path, work: Path) -> dict[str, dict[str, float | int]]:
    """encode and decode of one PNG, and its whole decode by Pillow."""
    work.mkdir()
    ltchm = [sys.executable, "-m", "ltchm"]
    ltc = work / "a.ltc"
    res = {"encode": _run([*ltchm, "encode", str(src), str(ltc), "--model", str(model)])}
    if ltc.is_file():
        res["decode"] = _run([*ltchm, "decode", str(ltc), str(work / "back.png")])
    res["whole read"] = _run([sys.executable, "-c", _WHOLE_PNG, str(src)])
    return res


def _print_commands(rows: list[dict]) -> None:
    print("\n| command | input | Mpx | peak RSS | s | exit | baseline: whole read |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for group in ("scenes", "codec"):
            res = r.get(group)
            if not res:
                continue
            base = res["whole read"]
            for cmd, m in res.items():
                if cmd == "whole read":
                    continue
                print(f"| {cmd} | {r['input']} | {r['mpx']:.0f} | {m['peak_mib']} MiB "
                      f"| {m['seconds']} | {m['exit']} | {base['peak_mib']} MiB |")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="2048,8192,32768", help="image sides")
    p.add_argument("--skip-baseline-above", type=int, default=0,
                   help="no baseline run for sides above this (0: run every one)")  # fmt: skip
    p.add_argument("--commands", default="preprocess,scenes,codec",
                   help="which commands to measure")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ltchm-mem-") as tmp:
        work = Path(tmp)
        # every image to the train split (tiled), where windowed reading applies
        train = "preprocess:\n  split_ratios: [1.0, 0.0, 0.0]\n"
        (work / "platform.yaml").write_text(train)
        (work / "baseline.yaml").write_text(
            train + "  max_worker_memory: 1099511627776\n  window_reads_above: 1099511627776\n"
        )
        commands = set(args.commands.split(","))
        model = work / "model.pt"
        subprocess.run([sys.executable, "-c", _MODEL, str(model)], check=True, cwd=REPO)
        for n in (int(s) for s in args.sizes.split(",")):
            for kind in ("tif", "png"):
                side = n if kind == "tif" else min(n, 30000)
                src = work / f"{kind}{side}" / f"scene.{kind}"
                src.parent.mkdir()
                subprocess.run([sys.executable, "-c", _GEN, kind, str(side), str(src)], check=True)
                row = {"input": f"{kind.upper()} {side}x{side}", "mpx": side * side / 1e6,
                       "file_kb": src.stat().st_size / 1024}  # fmt: skip
                if kind == "tif" and "scenes" in commands:
                    row["scenes"] = _scenes(src, model, work / f"scenes{side}")
                if kind == "png" and "codec" in commands:
                    row["codec"] = _codec(src, model, work / f"codec{side}")
                variants = {"platform": ["--config", str(work / "platform.yaml")]}
                if not args.skip_baseline_above or side <= args.skip_baseline_above:
                    variants["baseline"] = ["--config", str(work / "baseline.yaml")]
                if "preprocess" not in commands:
                    variants = {}
                for name, extra in variants.items():
                    out = work / f"out-{kind}{side}-{name}"
                    cmd = [sys.executable, "-m", "jobs.preprocess", str(src.parent), "--out",
                           str(out), "--local", "--no-progress", "--shard-max-bytes", "50000000",
                           "--split-seed", "0", *extra]  # fmt: skip
                    mib, secs, rc = peak_rss(cmd)
                    manifest = out / "manifest.json"
                    samples = (
                        sum(json.loads(manifest.read_text())["samples"].values())
                        if manifest.is_file()
                        else 0
                    )
                    row[name] = {"peak_mib": round(mib), "seconds": round(secs, 1), "exit": rc,
                                 "samples": samples}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    _print_commands(rows)
    print("\n| input | Mpx | file | platform peak RSS | s | samples | baseline peak RSS | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "platform" not in r:
            continue
        b = r.get("baseline")
        base = f"{b['peak_mib']} MiB | {b['seconds']}" if b else "not run |"
        pl = r["platform"]
        print(f"| {r['input']} | {r['mpx']:.0f} | {r['file_kb']:.0f} KB | {pl['peak_mib']} MiB "
              f"| {pl['seconds']} | {pl['samples']} | {base} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
