"""The scene codec: job throughput vs the bare model, memory vs scene size, Ray workers, the
unit of work, and the measurements behind the defaults (overlap, bit-depth mapping).

Scenes of 2048² and 8192² are built by mirroring the 4-band NAIP dev scene (tiled, DEFLATE
GeoTIFFs). The model is LTCHM (checkerboard) at ``--N`` channels, fitted ``--fit-steps`` on
the UC-Merced dev images (its rate, hence its entropy-coding time, is that of a codec that
reconstructs; the paper's N=192 is ~9x slower per tile on this CPU and would only shrink the
job's relative overhead). Sections:

* ``throughput``: MPix/s (scene pixels / wall) encoding the 2k² scene: the bare model on the
  same tile batches held in memory, the job in this process (``--local``) and on Ray with
  1 worker x 2 threads, 1 x 1 and 2 x 1 (encode only; and 2 x 1 with the verify pass).
  Ray is started and warm before timing; each job run includes its actors' start (model load).
* ``chunks``: MPix/s with 2 workers for tiles per task (the unit of work) of 1 .. whole scene.
* ``rss``: peak resident memory of the job (driver, actor, the whole process tree) and of
  ``decompress-scene``, each in a fresh subprocess, for the 2k² and the 8k² scene.
* ``seams``: PSNR in 8-px bands around tile seams vs elsewhere, per overlap, on dev scenes.
* ``mapping``: scene-linear vs tile-linear on the 16-bit dev scenes: bpp, PSNR, seams.

    python benchmarks/scene.py [--sections throughput,chunks,rss,seams,mapping] [--N 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import rasterio
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ltchm.config import ScenesConfig
from ltchm.paths import dev_data

NAIP = "opengeos_naip_m_4709963_se_14_1_20100629.tif"


def build_scene(path: Path, size: int) -> Path:
    """A ``size``² 4-band scene mirrored from the NAIP dev scene, written strip by strip."""
    dev = dev_data()
    if dev is None:
        raise SystemExit("benchmarks/scene.py needs the development data (../shared/data/dev)")
    with rasterio.open(dev / "scenes" / NAIP) as src:
        base = src.read()
        profile = src.profile
    flipped = [base, base[:, :, ::-1], base[:, ::-1, :], base[:, ::-1, ::-1]]
    h, w = base.shape[1:]
    profile.update(width=size, height=size, tiled=True, blockxsize=512, blockysize=512,
                   compress="deflate", predictor=2, BIGTIFF="IF_SAFER")  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 512):
            rows = min(512, size - row)
            strip = np.empty((base.shape[0], rows, size), dtype=base.dtype)
            for y in range(row, row + rows):
                ty, iy = divmod(y, h)
                for tx in range(0, -(-size // w)):
                    img = flipped[(ty % 2) * 2 + tx % 2]
                    x0 = tx * w
                    n = min(w, size - x0)
                    strip[:, y - row, x0 : x0 + n] = img[:, iy, :n]
            dst.write(strip, window=Window(0, row, size, rows))
    return path


def fitted_model(path: Path, N: int, steps: int) -> Path:
    import torch

    from ltchm.codec import save_checkpoint
    from ltchm.imageio import list_images, read_image
    from ltchm.quickfit import quick_fit
    from ltchm.zoo import get_model

    if path.exists():
        return path
    dev = dev_data()
    images = [read_image(p) for p in list_images(dev / "ucm")]
    torch.manual_seed(0)
    model = get_model("ltchm", N=N, context="checkerboard")
    t0 = time.perf_counter()
    quick_fit(model, images, steps=steps, lmbda=4096, patch=64, batch=4, lr=2e-3)
    print(f"fitted ltchm N={N} for {steps} steps in {time.perf_counter() - t0:.0f} s")
    save_checkpoint(model, path, lmbda=4096)
    return path


def _table(head: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r) + " |")
    print()


def _load() -> str:
    return "load avg " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- throughput, workers, chunks ------------------------------------------------------------
def bare_model(scene: Path, model_path: Path, cfg: ScenesConfig, threads: int) -> float:
    """Seconds for model.compress on every tile batch of the scene, tiles read beforehand."""
    import torch

    before = torch.get_num_threads()  # the local job runs in this process afterwards
    torch.set_num_threads(threads)
    try:
        return _bare_model(scene, model_path, cfg)
    finally:
        torch.set_num_threads(before)


def _bare_model(scene: Path, model_path: Path, cfg: ScenesConfig) -> float:
    import torch

    from ltchm.codec import load_checkpoint
    from pipeline.scenes.bands import channels_of, fill_invalid, to_unit
    from pipeline.scenes.encode import plan_scene
    from pipeline.scenes.mosaic import grid_of
    from pipeline.scenes.source import open_scene, read_tile
    from pipeline.scenes.tiles import TileCoder, scene_mapping

    coder = TileCoder(load_checkpoint(model_path))
    header = plan_scene(str(scene), cfg, coder.identity)
    grid = grid_of(header)
    bands = header.coded_bands
    lo, hi = scene_mapping(header)
    batches = []
    with open_scene(str(scene)) as ds:
        for i in range(len(grid)):
            src = read_tile(ds, Window(*grid.window(i)), header)
            v = fill_invalid(to_unit(src.data, lo, hi), src.valid)
            chans = [[bands.index(b) for b in channels_of(g)] for g in header.groups]
            batches.append(coder.pad(torch.from_numpy(np.stack([v[c] for c in chans]))))
    t0 = time.perf_counter()
    for x in batches:
        coder.model.compress(x)
    return time.perf_counter() - t0


def job(scene: Path, model_path: Path, cfg: ScenesConfig, out: Path, use_ray: bool) -> float:
    from jobs.compress_scenes import compress_scenes

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = compress_scenes([scene], out, str(model_path), cfg, use_ray=use_ray, progress=False)
    seconds = time.perf_counter() - t0
    assert not result.failed, result.failed
    return seconds


def throughput(scene: Path, model_path: Path, tmp: Path, repeats: int, full: bool) -> None:
    import ray

    base = ScenesConfig()
    mpix = _mpix(scene)
    runs: list[tuple[str, float, int]] = []
    bare = min(bare_model(scene, model_path, base, 2) for _ in range(repeats))
    runs.append(("bare model, 2 threads", bare, 2))
    bare1 = min(bare_model(scene, model_path, base, 1) for _ in range(repeats))
    runs.append(("bare model, 1 thread", bare1, 1))
    no_verify = base.model_copy(update={"verify": False})
    if full:
        local = min(job(scene, model_path, no_verify, tmp / "o", False) for _ in range(repeats))
        runs.append(("job --local (2 threads)", local, 2))
    configs = [("job, Ray 1 worker x 2 threads", {"workers": 1, "cpus_per_worker": 2}, 2)]
    if full:
        configs.append(("job, Ray 1 worker x 1 thread", {"workers": 1, "cpus_per_worker": 1}, 1))
    configs.append(("job, Ray 2 workers x 1 thread", {"workers": 2, "cpus_per_worker": 1}, 2))
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        job(scene, model_path, no_verify.model_copy(update={"workers": 2}), tmp / "o", True)
        for name, update, cpus in configs:
            cfg = no_verify.model_copy(update=update)
            runs.append((name, min(job(scene, model_path, cfg, tmp / "o", True)
                                   for _ in range(repeats)), cpus))  # fmt: skip
        if full:
            cfg = base.model_copy(update={"workers": 2, "cpus_per_worker": 1})
            runs.append(("job, Ray 2 x 1, with verify",
                         job(scene, model_path, cfg, tmp / "o", True), 2))  # fmt: skip
    finally:
        ray.shutdown()
    print(f"### throughput: {scene.name} ({mpix:.2f} Mpx, 4 bands = 2 groups/tile), "
          f"best of {repeats}, {_load()}")  # fmt: skip
    rows = []
    for name, s, cpus in runs:
        ref = bare if cpus == 2 else bare1
        rows.append([name, round(s, 2), round(mpix / s, 3), round(ref / s, 3)])
    _table(["run", "wall (s)", "MPix/s", "x bare model (same CPUs)"], rows)


def chunks(scene: Path, model_path: Path, tmp: Path, repeats: int) -> None:
    import ray

    from pipeline.scenes.grid import SceneGrid

    mpix = _mpix(scene)
    with rasterio.open(scene) as ds:
        n = len(SceneGrid(ds.width, ds.height, 512, ScenesConfig().overlap, 0))
    rows = []
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        # the first job on a fresh Ray also starts its worker processes: not a chunk's cost
        job(scene, model_path, ScenesConfig(verify=False, workers=2), tmp / "o", True)
        for k in sorted({1, 2, 4, 8, 16, n}):
            cfg = ScenesConfig(verify=False, workers=2, cpus_per_worker=1, chunk_tiles=k)
            s = min(job(scene, model_path, cfg, tmp / "o", True) for _ in range(repeats))
            rows.append([k if k < n else f"{k} (whole scene)", round(s, 2), round(mpix / s, 3)])
    finally:
        ray.shutdown()
    print(f"### unit of work: {scene.name}, {n} tiles, Ray 2 workers x 1 thread, best of "
          f"{repeats} after a warm-up job, {_load()}")  # fmt: skip
    _table(["tiles per task", "wall (s)", "MPix/s"], rows)


def _mpix(scene: Path) -> float:
    with rasterio.open(scene) as ds:
        return ds.width * ds.height / 1e6


# -- memory ---------------------------------------------------------------------------------
def _peak_rss(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``; sample the RSS of it and its descendants every 50 ms (MiB peaks)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    peaks = {"driver": 0.0, "worker": 0.0, "tree": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            total = 0.0
            for p in procs:
                try:
                    rss = p.memory_info().rss / 2**20
                    name = " ".join(p.cmdline()[:3])
                except psutil.Error:
                    continue
                total += rss
                if p.pid == root.pid:
                    peaks["driver"] = max(peaks["driver"], rss)
                elif "SceneWorker" in name or "ray::" in p.name():
                    peaks["worker"] = max(peaks["worker"], rss)
            peaks["tree"] = max(peaks["tree"], total)
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, _ = proc.communicate()
    done.set()
    t.join()
    if proc.returncode not in (0,):
        raise RuntimeError(out.decode()[-2000:])
    return peaks


def rss(scenes: list[Path], model_path: Path, tmp: Path) -> None:
    env = {**os.environ, "LTCHM_MODEL_STORE": str(tmp / "store")}
    rows = []
    py = sys.executable
    for scene in scenes:
        out = tmp / f"rss-{scene.stem}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        enc = _peak_rss([py, "-m", "jobs.compress_scenes", str(scene), "--model", str(model_path),
                         "--out", str(out), "--workers", "1", "--cpus-per-worker", "2",
                         "--no-progress"], env)  # fmt: skip
        t_enc = time.perf_counter() - t0
        ltcs = next(out.rglob("*.ltcs"))
        t0 = time.perf_counter()
        dec = _peak_rss([py, "-m", "pipeline.scenes.decompress", str(ltcs), str(tmp / "d.tif"),
                         "--no-progress"], env)  # fmt: skip
        t_dec = time.perf_counter() - t0
        rows.append([scene.name, round(_mpix(scene), 1), round(enc["driver"]), round(enc["worker"]),
                     round(enc["tree"]), round(t_enc, 1), round(dec["driver"]),
                     round(t_dec, 1)])  # fmt: skip
        (tmp / "d.tif").unlink(missing_ok=True)
    print(f"### peak RSS (MiB), fresh processes, {_load()}")
    _table(["scene", "Mpx", "job driver", "job actor", "job tree (+raylet, gcs)",
            "encode + verify (s)",
            "decompress-scene", "decode (s)"], rows)  # fmt: skip
    if len(rows) == 2:
        a, b = rows
        print(f"growth {b[0]} / {a[0]}: actor x{b[3] / a[3]:.2f}, driver x{b[2] / a[2]:.2f}, "
              f"tree x{b[4] / a[4]:.2f}, decompress-scene x{b[6] / a[6]:.2f}\n")  # fmt: skip


# -- quality measurements behind the defaults ------------------------------------------------
def _code(src: Path, model, cfg: ScenesConfig, tmp: Path):
    from pipeline.scenes.container import SceneReader
    from pipeline.scenes.encode import encode_scene
    from pipeline.scenes.mosaic import SceneDecoder
    from pipeline.scenes.tiles import TileCoder

    path = tmp / "q.ltcs"
    coder = TileCoder(model)
    encode_scene(src, path, coder, cfg)
    with SceneReader(path) as r:
        dec = SceneDecoder(r, coder)
        out, _ = dec.read()
        return out, dec.grid, r.size


def _shifted(src: Path, shift: int, tmp: Path) -> Path:
    """``src`` without its first ``shift`` rows and columns (georeferenced accordingly)."""
    out = tmp / f"{src.stem}-shift{shift}.tif"
    if not out.exists():
        with rasterio.open(src) as ds:
            w = Window(shift, shift, ds.width - shift, ds.height - shift)
            profile = ds.profile | {"width": int(w.width), "height": int(w.height),
                                    "transform": ds.window_transform(w)}  # fmt: skip
            with rasterio.open(out, "w", **profile) as dst:
                dst.write(ds.read(window=w))
                if any(m.name == "per_dataset" for m in ds.mask_flag_enums[0]):
                    dst.write_mask(ds.dataset_mask(window=w))
    return out


def seams(model_path: Path, tmp: Path, extra: list[Path]) -> None:
    """Two seam measures per configuration, over the RGB bands of several scenes:

    * controlled: each scene is coded twice, the second time without its first tile/2 rows
      and columns, so that the first coding's seams fall inside the second's tiles; the
      deficit is PSNR of the same pixels (8-px bands around the first coding's seams, away
      from the second's) coded inside tiles minus coded at seams. Content cancels out.
    * raw: seam bands vs everything else in one coding (content differences included).
    """
    from ltchm.codec import load_checkpoint
    from pipeline.scenes.verify import region_psnr, seam_mask, seam_psnr

    model = load_checkpoint(model_path)
    dev = dev_data() / "scenes"
    names = [dev / NAIP, dev / "riocogeo_image_geos.tif", dev / "rasterio_RGB.byte.tif",
             dev / "riotiler_pix4d_alpha_nodata.tif", *extra]  # fmt: skip
    rows = []
    configs = {256: [(0, 0), (16, 16), (32, 32)],
               512: [(0, 0), (8, 8), (16, 16), (16, 0), (32, 32)]}  # fmt: skip
    for tile, overlaps in configs.items():
        base: dict[Path, int] = {}
        for overlap, blend in overlaps:
            cfg = ScenesConfig(tile_size=tile, overlap=overlap, blend_width=blend)
            controlled, raw, size = [], [], 0
            sizes = {}
            for src in names:
                with rasterio.open(src) as ds:
                    ref, valid = ds.read([1, 2, 3]).astype(np.float64), ds.dataset_mask() > 0
                out_a, grid_a, sizes[src] = _code(src, model, cfg, tmp)
                s, i = seam_psnr(ref, out_a[:3], valid, grid_a)
                raw.append(i - s)
                shift = tile // 2
                out_b, grid_b, _ = _code(_shifted(src, shift, tmp), model, cfg, tmp)
                ref_c = ref[:, shift:, shift:]
                region = (seam_mask(grid_a)[shift:, shift:] & valid[shift:, shift:]
                          & ~seam_mask(grid_b, 2 * overlap + 16))  # fmt: skip
                at_seam = region_psnr(ref_c, out_a[:3, shift:, shift:], region, 255.0)
                inside = region_psnr(ref_c, out_b[:3], region, 255.0)
                controlled.append(inside - at_seam)
            if overlap == 0:
                base = sizes
            size = sum(sizes.values()) / sum(base.values())
            rows.append([tile, overlap, blend, round(float(np.mean(controlled)), 2),
                         round(float(np.max(controlled)), 2), round(float(np.mean(raw)), 2),
                         round(size, 3)])  # fmt: skip
    print(f"### seams: {len(names)} scenes (RGB bands), {_load()}")
    _table(["tile", "overlap", "blend", "controlled deficit mean (dB)", "controlled max",
            "raw deficit mean", "bytes x no overlap"], rows)  # fmt: skip


def mapping(model_path: Path, tmp: Path) -> None:
    from ltchm.codec import load_checkpoint
    from pipeline.scenes.verify import BandErrors, psnr_db, seam_psnr

    model = load_checkpoint(model_path)
    dev = dev_data() / "scenes"
    rows = []
    for name in ["riocolor_rgb16.tif", "solaris_pan1.tif", "paddlers_ssst_multispectral.tif"]:
        with rasterio.open(dev / name) as ds:
            ref = ds.read()
            px = ds.width * ds.height
        for mode in ("scene-linear", "tile-linear"):
            cfg = ScenesConfig(tile_size=256, bit_mapping=mode)
            out, grid, size = _code(dev / name, model, cfg, tmp)
            e = BandErrors.empty(ref.shape[0])
            for b in range(ref.shape[0]):
                d = out[b].astype(float) - ref[b]
                e.sse[b], e.count[b] = float((d * d).sum()), d.size
                e.lo[b], e.hi[b] = float(ref[b].min()), float(ref[b].max())
            p, _ = psnr_db(e, "uint16")
            peak = float(max(e.hi) - min(e.lo))
            s, i = seam_psnr(ref, out, np.ones(ref.shape[1:], bool), grid, peak)
            deficit = round(i - s, 2) if grid.rows * grid.cols > 1 else "one tile"
            rows.append([name, mode, round(8 * size / px, 4), round(float(np.mean(p)), 2),
                         round(float(np.min(p)), 2), deficit])  # fmt: skip
    print(f"### bit-depth mapping, 16-bit dev scenes, tile 256, {_load()}")
    _table(["scene", "mapping", "bpp", "PSNR mean (dB)", "PSNR min (dB)", "seam deficit (dB)"],
           rows)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="throughput,chunks,rss,seams,mapping")
    parser.add_argument("--N", type=int, default=32)
    parser.add_argument("--fit-steps", type=int, default=300)
    parser.add_argument("--model", type=Path, help="a checkpoint instead of fitting one")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--big", type=int, default=8192, help="side of the large scene")
    parser.add_argument("--work", type=Path, help="keep scenes and model here (reused)")
    args = parser.parse_args()
    sections = args.sections.split(",")
    from ltchm.runtime import tune_allocator

    tune_allocator()
    work = args.work or Path(tempfile.mkdtemp(prefix="scene-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{_load()}, {os.cpu_count()} CPUs; work folder {work}\n")
    model = args.model or fitted_model(work / f"ltchm-n{args.N}-{args.fit_steps}.pt", args.N,
                                       args.fit_steps)  # fmt: skip
    small = work / "naip-2048.tif"
    if not small.exists():
        build_scene(small, 2048)
    big = work / f"naip-{args.big}.tif"
    if ("rss" in sections or "throughput" in sections) and not big.exists():
        build_scene(big, args.big)
    if "throughput" in sections:
        throughput(small, model, work, args.repeats, full=True)
        throughput(big, model, work, 1, full=False)
    if "chunks" in sections:
        chunks(small, model, work, args.repeats)
    if "rss" in sections:
        rss([small, big], model, work)
    if "seams" in sections:
        seams(model, work, [])
    if "mapping" in sections:
        mapping(model, work)
    print(json.dumps({"finished": time.strftime("%Y-%m-%d %H:%M"), "load": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
