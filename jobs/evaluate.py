"""``ltchm evaluate``: rate-distortion curves, BD-rate against JPEG2000, complexity, MLflow.

Runs the classical codecs (``--codecs``) and any learned models (``--models``) on every image
of ``--data``, measures bpp from the real files and PSNR, MS-SSIM (and dB), LPIPS and VIFp,
and writes all points, the averaged RD points, a BD table like the paper's Tab. 3, a
complexity table like Tab. 6 and RD plots into ``--out``, then records them in MLflow.

Examples::

    ltchm evaluate --data /data/ucm --codecs jpeg2000,webp --out results/ucm
    ltchm evaluate --models ltchm=runs/l128/model.ckpt ltchm=runs/l512/model.ckpt \\
        --data shards/ --out results/ltchm --lpips-weights alexnet-owt-7be5be79.pth
    ltchm evaluate --models ltchm=runs/ltchm/lambda_{128,512}/model.pt \\
        cheng2020-attn=runs/cheng2020-attn/lambda_{128,512}/model.pt --data ucm/ --out cmp/
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltchm.cli_options import add_config, add_device, add_progress, add_tracking_uri
from ltchm.config import Config, ConfigError, load_config

__all__ = ["EvaluationResult", "build_parser", "evaluate", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ltchm evaluate",
        description="Rate-distortion evaluation of learned models and classical codecs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "--models entries: [LABEL=]SOURCE[,config=FILE]; SOURCE is a checkpoint path, "
            "models:/name@alias, pretrained:<set>/<λ> or a registry name (with config=). "
            "Entries with the same LABEL (default 'ltchm') form one RD curve, one point per "
            "model; every curve is drawn on the same plots and gets a BD-rate against the "
            "anchor, e.g. --models ltchm=A.pt ltchm=B.pt tcm=C.pt cheng2020-attn=D.pt."
        ),
    )
    p.add_argument("--models", nargs="+", default=[], metavar="SPEC", help="learned models")
    p.add_argument(
        "--data", required=True, help="folder of images, folder of test-*.tar shards, or shards"
    )
    p.add_argument(
        "--codecs",
        default=None,
        help="comma-separated classical codecs of jpeg2000,webp,avif,hevc,jpeg, or 'none' "
        "(default: evaluate.codecs)",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_config(p, help="YAML config", repeatable=True)
    p.add_argument("--lpips-weights", help="AlexNet ImageNet weights file for LPIPS")
    p.add_argument("--no-lpips", action="store_true", help="leave LPIPS out (reported as n/a)")
    add_tracking_uri(p, default="tracking.tracking_uri")
    p.add_argument("--experiment", help="MLflow experiment (default: tracking.experiment)")
    p.add_argument("--no-mlflow", action="store_true", help="do not record in MLflow")
    p.add_argument("--max-images", type=int, help="evaluate the first N images only")
    p.add_argument("--workers", type=int, help="worker processes (default: evaluate.workers)")
    p.add_argument("--anchor", help="BD anchor codec (default: evaluate.anchor, jpeg2000)")
    add_device(p, default=None)
    p.add_argument("--no-complexity", action="store_true", help="skip the complexity table")
    p.add_argument("--drop-alpha", action="store_true", help="evaluate RGBA images' RGB bands")
    add_progress(p)
    return p


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _codec_names(arg: str | None, default: tuple[str, ...]) -> list[str]:
    if arg is None:
        return list(default)
    if arg.strip().lower() == "none":
        return []
    names = [n.strip().lower() for n in arg.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"--codecs lists a codec twice: {arg}")
    return names


def _learned(models: list[str], classical: list[str], device: str) -> list[Any]:
    from ltchm.evaluation.learned import LearnedCodec, parse_model_spec

    curves: dict[str, list] = {}
    for text in models:
        spec = parse_model_spec(text)
        curves.setdefault(spec.curve, []).append(spec)
    clash = sorted(set(curves) & set(classical))
    if clash:
        raise ValueError(f"--models curve name(s) {clash} clash with classical codec names")
    return [LearnedCodec(name, specs, device=device) for name, specs in curves.items()]


@dataclass
class EvaluationResult:
    """What ``evaluate`` wrote (``out``), how much, and the MLflow run that records it."""

    out: Path
    points: int
    images: int
    seconds: float
    run_id: str | None


def evaluate(
    data: str | Path,
    out: str | Path,
    cfg: Config,
    *,
    models: Sequence[str] = (),
    codecs: Sequence[str] | None = None,
    device: str | None = None,
    max_images: int | None = None,
    lpips: bool = True,
    complexity: bool = True,
    drop_alpha: bool = False,
    tracking: bool = True,
    progress: bool = True,
    command: str = "ltchm evaluate",
) -> EvaluationResult:
    """Evaluate ``models`` and the classical ``codecs`` on the images of ``data``.

    Args:
        data: a folder of images, a folder of ``test-*.tar`` shards, or shards (braces).
        out: the report's folder (points, RD table, BD table, complexity, plots).
        cfg: the config (its ``evaluate`` and ``tracking`` sections).
        models: ``[CURVE=]SPEC[,config=FILE]`` entries; same CURVE, one curve.
        codecs: classical codec names; None: ``cfg.evaluate.codecs``.
        device: of the learned models; None: cuda if available, else cpu.
        tracking: record the comparison run (and each model's point in its training run).

    Raises:
        ValueError: nothing to evaluate, or no images. CodecError, LpipsWeightsError,
        ImageFormatError, FileNotFoundError: as their names say.
    """
    import torch

    from ltchm.evaluation.codecs import build_classical
    from ltchm.evaluation.complexity import complexity_table
    from ltchm.evaluation.data import open_images
    from ltchm.evaluation.metrics import LpipsWeightsError, alexnet_weights_path
    from ltchm.evaluation.report import write_report
    from ltchm.evaluation.runner import evaluate as run_codecs

    out = Path(out)
    ev = cfg.evaluate
    use_lpips = ev.lpips and lpips
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = list(ev.codecs if codecs is None else codecs)
    coders = build_classical(names, ev) + _learned(list(models), names, device)
    if not coders:
        raise ValueError("nothing to evaluate: no --codecs and no --models")
    source = open_images(str(data), max_images, drop_alpha=drop_alpha)
    lpips_path = None
    lpips_missing = None
    if use_lpips:
        try:
            lpips_path = alexnet_weights_path(ev.lpips_weights)
        except LpipsWeightsError as exc:
            if ev.lpips_weights is not None:
                raise  # a file the user named: their mistake to hear about
            # no weights anywhere (they cannot be downloaded at run time): LPIPS is n/a
            use_lpips, lpips_missing = False, str(exc)
            print(
                "ltchm evaluate: notice: LPIPS reported as n/a, no AlexNet weights here "
                "(pass --lpips-weights FILE to compute it; --no-lpips to silence this)"
            )

    print(f"ltchm evaluate: {source.description}; codecs: {', '.join(c.name for c in coders)}")
    t0 = time.perf_counter()
    records = run_codecs(
        source,
        coders,
        lpips_weights=None if lpips_path is None else str(lpips_path),
        use_lpips=use_lpips,
        workers=ev.workers,
        total_images=source.count(),
        progress=progress,
    )
    if not records:
        raise ValueError(f"no images in {data}")
    elapsed = time.perf_counter() - t0
    n_images = len({r["image"] for r in records})

    complexity_rows = None
    if ev.complexity and complexity:
        first = next(iter(open_images(str(data), 1, drop_alpha=drop_alpha)))[1]
        complexity_rows = complexity_table(coders, first, repeats=ev.complexity_repeats)

    used = {c.name for c in coders}
    notes = [
        "bpp = 8 x bytes of the complete file each codec writes / pixels of the image.",
        "MS-SSIM: 5 scales (pytorch_msssim); undefined (n/a) for images with a side <= 160 px, "
        "averaged over the images where defined (rd.csv n_ms_ssim). RD ms_ssim_db is "
        "-10 log10(1 - mean MS-SSIM).",
    ]
    if "hevc" in used:
        notes.append(
            "hevc = HEVC intra (x265) with BPG's settings, a stand-in for BPG (no BPG encoder "
            "packaged); its raw stream carries ~0.1 kB more header than a .bpg file."
        )
    if "avif" in used:
        notes.append(
            "avif qualities use libavif >= 1.0's quality -> quantizer mapping, pinned with "
            "avifenc 0.11's --min/--max."
        )
    if lpips_missing:
        notes.append(f"LPIPS n/a: {lpips_missing}")
    elif not use_lpips:
        notes.append("LPIPS not computed (--no-lpips / evaluate.lpips: false).")
    summary: dict[str, Any] = {
        "title": f"{Path(str(data).rstrip('/')).name} ({n_images} images)",
        "data": str(data),
        "images": n_images,
        "image_names": sorted({r["image"] for r in records}),
        "codecs": [
            {
                "name": c.name,
                "label": c.label,
                "setting_name": c.setting_name,
                "ladder": list(c.ladder()),
                "versions": c.versions(),
            }
            for c in coders
        ],
        "anchor": ev.anchor,
        "bd_method": ev.bd_method,
        "lpips": None
        if lpips_path is None
        else {
            "net": "alex",
            "version": "0.1",
            "weights": str(lpips_path),
            "sha256": _sha256(lpips_path),
        },
        "config": cfg.evaluate.model_dump(mode="json"),
        "elapsed_s": elapsed,
        "command": command,
        "notes": notes,
    }
    from ltchm.evaluation.learned import LearnedCodec

    learned = [c.name for c in coders if isinstance(c, LearnedCodec)]
    result = write_report(
        out, records, summary, ev.anchor, ev.bd_method, complexity_rows, learned=learned
    )
    print(f"\n{(out / 'bd.md').read_text()}")
    print(f"{len(records)} points from {n_images} images in {elapsed:.0f} s -> {out}")

    run_id = None
    if tracking:
        from ltchm.evaluation.tracking import log_comparison_run, log_to_model_runs
        from ltchm.tracking import resolve_tracking_uri

        uri = resolve_tracking_uri(cfg.tracking.tracking_uri)
        params = {
            "data": str(data),
            "images": n_images,
            "codecs": ",".join(c.name for c in coders),
            "anchor": ev.anchor,
            "bd_method": ev.bd_method,
            "lpips": "alex-v0.1" if use_lpips else "off",
        }
        for c in summary["codecs"]:
            params[f"{c['name']}.{c['setting_name']}s"] = c["ladder"]
            for tool, version in c["versions"].items():
                params[f"{c['name']}.{Path(tool).name}"] = version
        run_id = log_comparison_run(
            uri,
            cfg.tracking.experiment,
            out,
            params,
            result["rd"],
            result["bd"],
            run_name=f"evaluate {Path(str(data)).name}",
            artifact_location=cfg.tracking.artifact_location,
        )
        # The hook for the training job's λ child runs: models whose identity names the run
        # that trained them get their RD point logged there.
        source_runs = {
            (c.name, s): rid
            for c in coders
            if hasattr(c, "source_run_id")
            for s in c.ladder()
            if (rid := c.source_run_id(s))
        }
        logged = log_to_model_runs(uri, result["rd"], source_runs, run_id)
        print(
            f"MLflow: comparison run {run_id} at {uri}"
            + (f"; {len(logged)} model runs" if logged else "")
        )
    return EvaluationResult(out, len(records), n_images, elapsed, run_id)


def main(argv: list[str] | None = None) -> int:
    """``ltchm evaluate``"""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from ltchm.evaluation.codecs import CodecError
    from ltchm.evaluation.metrics import LpipsWeightsError
    from ltchm.imageio import ImageFormatError

    if args.max_images is not None and args.max_images < 1:
        print("ltchm evaluate: error: --max-images must be >= 1", file=sys.stderr)
        return 2
    try:
        cfg = load_config(
            args.config,
            {
                "evaluate.lpips_weights": args.lpips_weights,
                "evaluate.workers": args.workers,
                "evaluate.anchor": args.anchor,
                "tracking.tracking_uri": args.tracking_uri,
                "tracking.experiment": args.experiment,
            },
        )
        evaluate(
            args.data,
            args.out,
            cfg,
            models=args.models,
            codecs=_codec_names(args.codecs, cfg.evaluate.codecs),
            device=args.device,
            max_images=args.max_images,
            lpips=not args.no_lpips,
            complexity=not args.no_complexity,
            drop_alpha=args.drop_alpha,
            tracking=not args.no_mlflow,
            progress=not args.no_progress,
            command="ltchm evaluate " + " ".join(argv),
        )
        return 0
    except (
        CodecError,
        LpipsWeightsError,
        ImageFormatError,
        ConfigError,
        FileNotFoundError,
        ValueError,
    ) as exc:
        print(f"ltchm evaluate: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
