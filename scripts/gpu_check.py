"""The GPU path in one go: DeepSpeed training (bf16 and fp32), codec timings, GPU -> CPU decoding.

Run by ``scripts/gpu_check.sh`` (which installs the wheels of ``scripts/gpu_bundle.sh`` where
packages are missing). Everything goes into ``OUT/gpu_check.json``, written after every stage
so that a run cut short keeps what it measured:

1. ``jobs.train_deepspeed`` under DeepSpeed's launcher, no tracking: LTCHM (N = 192,
   λ = 512 by default) on 256² crops, batch 8, ZeRO stage 1: first fp32 for a fixed number of
   steps, then bf16 for as many steps as fit the time left (``--minutes`` in all); images/s
   from each run's own per-step times, and the bf16 loss curve (bf16 is autocast over float32
   weights, ``jobs.training.dsconfig``);
2. encode and decode times of 256² images on the device for both context modes (the paper's
   Tab. 6: 124 / 127 ms on an RTX 3090), the checkerboard model taking the trained weights;
   the autoregressive decode also with its serial steps on the device instead of the CPU;
3. encode on the device, decode on the CPU and on the device: the decoded latents must be
   identical (the codec's reproducible arithmetic), and so must the images.

``--cpu`` runs the same on the CPU (bf16 being autocast, it runs there too, if slowly).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _save(out: Path, report: dict[str, Any]) -> None:
    tmp = out / ".gpu_check.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out / "gpu_check.json")


def _environment(device: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": device,
        "cpus": os.cpu_count(),
    }
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    from importlib.metadata import PackageNotFoundError, version

    for name in ("numpy", "deepspeed", "compressai", "constriction", "webdataset"):
        try:
            env[name] = version(name)
        except PackageNotFoundError:
            env[name] = None
    return env


def _train_config(path: Path, args: argparse.Namespace, precision: str, steps: int) -> Path:
    path.write_text(
        f"extends: {REPO / 'configs' / f'lambda_{args.lmbda}.yaml'}\n"
        f"model: {{N: {args.N}, context: autoregressive}}\n"
        f"train: {{steps: {steps}, batch_size: {args.batch_size}, patch_size: {args.patch_size},\n"
        f"        log_every: 1, val_every: {10**9}, checkpoint_every: {steps},\n"
        f"        loader_workers: {args.loader_workers}}}\n"
        f"deepspeed: {{zero_stage: 1, precision: {precision}}}\n"
        f"data: {{shuffle_buffer: 256, epoch_length: 100000}}\n"
    )
    return path


def train(args: argparse.Namespace, precision: str, steps: int, deadline: float) -> dict[str, Any]:
    """One ``jobs.train_deepspeed`` run under the launcher; its metrics and timings."""
    run_dir = args.out / f"train-{precision}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    config = _train_config(run_dir / "config.yaml", args, precision, steps)
    launcher = shutil.which("deepspeed") or str(Path(sys.executable).parent / "deepspeed")
    cmd = [sys.executable, launcher, "--num_gpus", "1", "--master_port", str(args.port)]
    cmd += ["--module", "jobs.train_deepspeed", "--config", str(config)]
    cmd += ["--shards", str(args.shards), "--out", str(run_dir), "--no-tracking"]
    if not args.cpu:
        cmd.append("--gpu")
    t0 = time.perf_counter()
    with (run_dir / "log.txt").open("w") as log:
        proc = subprocess.run(
            cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            timeout=max(60.0, deadline - time.time()),
        )  # fmt: skip
    wall = time.perf_counter() - t0
    metrics_file = run_dir / f"lambda_{args.lmbda}" / "metrics.jsonl"
    rows = (
        [json.loads(line) for line in metrics_file.read_text().splitlines()]
        if (metrics_file.is_file())
        else []
    )
    result: dict[str, Any] = {"precision": precision, "steps": steps, "exit_code": proc.returncode,
                              "wall_s": round(wall, 1)}  # fmt: skip
    if proc.returncode != 0:
        result["log_tail"] = (run_dir / "log.txt").read_text()[-3000:]
    per_step = [r["seconds_per_step"] for r in rows if "seconds_per_step" in r]
    timed = per_step[min(5, len(per_step) - 1) :] if per_step else []
    if timed:
        sec = statistics.median(timed)
        result |= {
            "seconds_per_step_median": sec,
            "images_per_s": args.batch_size / sec,
            "time_to_first_step_s": next(
                (r["time_to_first_step_s"] for r in rows if "time_to_first_step_s" in r), None
            ),
        }
    result["loss"] = [[r["step"], r["loss"]] for r in rows if "loss" in r]
    result["bpp"] = [[r["step"], r["bpp"]] for r in rows if "bpp" in r]
    model = run_dir / f"lambda_{args.lmbda}" / "model.pt"
    result["model"] = str(model) if model.is_file() else None
    return result


def _images(args: argparse.Namespace, n: int) -> list[Any]:
    """``n`` 256² crops of the shards' held-out images (val, else test, else train)."""
    import torch

    from pipeline.loader import iter_images

    crops: list[Any] = []
    for split in ("val", "test", "train"):
        try:
            for x, _ in iter_images(args.shards, split):
                if min(x.shape[-2:]) >= 256:
                    crops.append(x[:, :256, :256].contiguous())
                if len(crops) == n:
                    return crops
        except FileNotFoundError:
            continue
    while len(crops) < n:  # too few images: flips of those we have
        crops.append(torch.flip(crops[len(crops) % max(1, len(crops))], dims=[-1]))
    return crops


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def codec(args: argparse.Namespace, model_path: str | None, device: str) -> dict[str, Any]:
    """Encode/decode timings for both context modes, and GPU encode -> CPU decode."""
    import torch

    from ltchm.codec import ImageCodec, load_checkpoint
    from ltchm.codec.checkpoint import prepare_for_coding
    from ltchm.zoo import get_model

    if model_path:
        trained = load_checkpoint(model_path)
        source = model_path
    else:  # training failed: time an untrained model rather than nothing
        torch.manual_seed(0)
        trained = prepare_for_coding(get_model("ltchm", N=args.N), force=True)
        source = "untrained (no training checkpoint)"
    images = _images(args, args.codec_images)
    out: dict[str, Any] = {"model": source, "image_size": [256, 256], "images": len(images)}
    for context in ("autoregressive", "checkerboard"):
        model = get_model("ltchm", N=trained.N, context=context)
        # the trained weights, but the context model's mask stays this context's own
        weights = {k: v for k, v in trained.state_dict().items() if not k.endswith(".mask")}
        model.load_state_dict(weights, strict=False)
        model = prepare_for_coding(model, force=True)
        enc = ImageCodec(model, device=device)
        files, decoded = [], []
        enc.encode(images[0])  # warm-up: kernels, allocator, tables on the device
        enc.decode(enc.encode(images[0]))
        t_enc, t_dec = [], []
        for x in images:
            _sync(device)
            t0 = time.perf_counter()
            data = enc.encode(x)
            _sync(device)
            t1 = time.perf_counter()
            decoded.append(enc.decode(data))
            _sync(device)
            t_enc.append(t1 - t0)
            t_dec.append(time.perf_counter() - t1)
            files.append(data)
        row: dict[str, Any] = {
            "encode_ms_median": 1000 * statistics.median(t_enc),
            "decode_ms_median": 1000 * statistics.median(t_dec),
            "bpp_mean": statistics.fmean(8 * len(d) / (256 * 256) for d in files),
        }
        if context == "autoregressive" and device != "cpu":
            # the same files with the serial wavefront steps on the device too (the first
            # GPU run's way): which is faster, and the same images either way
            enc.model.serial_decoding_on_cpu = False
            t_dev, same = [], True
            for data, image in zip(files, decoded, strict=True):
                _sync(device)
                t0 = time.perf_counter()
                same &= bool(torch.equal(enc.decode(data), image))
                _sync(device)
                t_dev.append(time.perf_counter() - t0)
            enc.model.serial_decoding_on_cpu = True
            row["decode_ms_median_serial_steps_on_device"] = 1000 * statistics.median(t_dev)
            row["serial_steps_on_cpu_or_device_same_images"] = same
        # the device's files decoded on the CPU: latents and images identical
        cpu_model = get_model("ltchm", N=trained.N, context=context)
        cpu_model.load_state_dict(model.state_dict())
        cpu_model.eval()
        same_latents, same_images = True, True
        for x in images[: args.cross_images]:
            dev_model = enc.model
            strings = dev_model.compress(x[None].to(device))
            dec_dev = dev_model.decompress(strings["strings"], strings["shape"])
            dec_cpu = cpu_model.decompress(strings["strings"], strings["shape"])
            same_latents &= bool(torch.equal(dec_dev["y_hat"].cpu(), dec_cpu["y_hat"].cpu()))
            cpu_codec = ImageCodec(cpu_model, device="cpu")
            a, b = enc.decode(enc.encode(x)), cpu_codec.decode(enc.encode(x))
            same_images &= bool((a - b).abs().max() <= 1.0 / 255)
        row["gpu_encoded_cpu_decoded_latents_identical"] = same_latents
        row["gpu_encoded_cpu_decoded_images_within_1_level"] = same_images
        out[context] = row
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and logs")
    p.add_argument("--cpu", action="store_true", help="run on the CPU")
    p.add_argument(
        "--steps", type=int, help="bf16 training steps (default: as many as fit; --cpu: both runs)"
    )
    p.add_argument("--fp32-steps", type=int, default=30, help="fp32 training steps")
    p.add_argument("--minutes", type=float, default=8.0, help="time for the whole check")
    p.add_argument("--shards", type=Path, help="ltchm preprocess output (default: bundle)")
    p.add_argument("--N", type=int, default=192)
    p.add_argument("--lmbda", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch-size", type=int, default=256)
    p.add_argument("--loader-workers", type=int, default=4)
    p.add_argument("--codec-images", type=int, default=8)
    p.add_argument("--cross-images", type=int, default=2)
    p.add_argument("--port", type=int, default=29533)
    args = p.parse_args(argv)
    t_start = time.time()
    deadline = t_start + 60 * args.minutes
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.shards is None:
        args.shards = REPO / ".gpu" / "shards"
    if not (args.shards / "manifest.json").is_file():
        print(f"gpu_check: no shards at {args.shards}; run scripts/gpu_bundle.sh first",
              file=sys.stderr)  # fmt: skip
        return 2
    args.shards = args.shards.resolve()

    import torch

    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible (use --cpu on a CPU-only machine)",
              file=sys.stderr)  # fmt: skip
        return 2
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "environment": _environment(device), "args": vars(args) | {
                                  "out": str(args.out), "shards": str(args.shards)}}  # fmt: skip
    _save(args.out, report)
    ok = True

    # 1. training: fp32 first (it also measures how many bf16 steps fit)
    fp32_steps = args.steps if args.cpu and args.steps else args.fp32_steps
    print(f"[1/3] fp32 training, {fp32_steps} steps ...", flush=True)
    report["train_fp32"] = fp32 = train(args, "fp32", fp32_steps, deadline)
    ok &= fp32["exit_code"] == 0
    _save(args.out, report)
    model_path = fp32.get("model")
    if args.cpu:
        steps = args.steps or fp32_steps
    else:
        reserve = 120.0  # launcher start, consolidation, then the codec stage
        left = deadline - time.time() - reserve
        sec = fp32.get("seconds_per_step_median") or 1.0
        fit = max(10, int(left / sec))  # bf16 is at least as fast as fp32
        steps = min(args.steps or fit, fit)
    print(f"[1/3] bf16 training, {steps} steps ...", flush=True)
    report["train_bf16"] = bf16 = train(args, "bf16", steps, deadline)
    ok &= bf16["exit_code"] == 0
    model_path = bf16.get("model") or model_path
    if bf16.get("images_per_s") and fp32.get("images_per_s"):
        report["bf16_speedup_over_fp32"] = bf16["images_per_s"] / fp32["images_per_s"]
    report["paper_recipe_hours"] = paper_recipe_hours(report)
    _save(args.out, report)
    _plot(bf16, args.out / "gpu_check_loss.png")

    print("[2/3] codec timings and [3/3] device -> CPU decoding ...", flush=True)
    report["codec"] = coding = codec(args, model_path, device)
    for context in ("autoregressive", "checkerboard"):
        ok &= coding[context]["gpu_encoded_cpu_decoded_latents_identical"]
        ok &= coding[context].get("serial_steps_on_cpu_or_device_same_images", True)
    report["paper_tab6_ms_rtx3090"] = {"encode": 124, "decode": 127}
    report["elapsed_s"] = round(time.time() - t_start, 1)
    report["ok"] = bool(ok)
    _save(args.out, report)
    print(json.dumps({k: report[k] for k in ("ok", "elapsed_s")} | {
        "train_fp32_images_per_s": fp32.get("images_per_s"),
        "train_bf16_images_per_s": report["train_bf16"].get("images_per_s"),
        "codec": coding}, indent=1))  # fmt: skip
    print(f"wrote {args.out / 'gpu_check.json'}")
    return 0 if ok else 1


PAPER_IMAGES_PER_LAMBDA = 200_000 * 8  # the paper's recipe: 200k steps of batch 8


def paper_recipe_hours(report: dict[str, Any]) -> dict[str, Any]:
    """The paper's recipe (six λ) in hours at each precision's measured images/s: one λ on
    one GPU, six λ on one GPU, and six λ on 8 GPUs taking one λ each (the rate points are
    independent runs). Only meaningful for the shape the check trained (N = 192, 256², 8)."""
    out: dict[str, Any] = {}
    for precision in ("fp32", "bf16"):
        rate = report.get(f"train_{precision}", {}).get("images_per_s")
        if rate:
            one = PAPER_IMAGES_PER_LAMBDA / rate / 3600
            out[precision] = {
                "one_lambda_one_gpu": round(one, 1),
                "six_lambdas_one_gpu": round(6 * one, 1),
                "six_lambdas_eight_gpus_one_each": round(one, 1),
            }
    return out


def _plot(run: dict[str, Any], path: Path) -> None:
    if not run.get("loss"):
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    steps, losses = zip(*run["loss"], strict=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, lw=1)
    ax.set(
        xlabel="step", ylabel="loss", yscale="log", title=f"bf16 training ({run['steps']} steps)"
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
