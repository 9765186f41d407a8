"""Quick recipe probes: the bare training loop of ``benchmarks/training.py`` (which trains
exactly as ``ltchm train`` does, loss for loss) with the real-bytes validation of the
platform, for choices that need many short runs (batch size, quantisation proxy, width).

Trains one rate point on the shards of ``benchmarks/devshards.py`` with ``configs/cpu.yaml``
plus ``--set KEY VALUE`` overrides, validates on the val split ``--evals`` times and prints
``(step, bpp, PSNR, J = λ·MSE + bpp)``.

    python benchmarks/recipe_probe.py --name b4 --set model.N 32 --set train.batch_size 4 \\
        --set train.steps 600
    python benchmarks/recipe_probe.py --name noise --noise ...   # decoder sees y + U(-½, ½)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from bare_loop import bare_steps
from devshards import build_shards

from jobs.training.validation import validate
from ltchm.config import load_config, yaml_value
from ltchm.paths import REPO_ROOT
from pipeline.loader import iter_images


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", default="probe")
    p.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    p.add_argument("--lmbda", type=float, default=512)
    p.add_argument("--evals", type=int, default=3)
    p.add_argument(
        "--noise",
        action="store_true",
        help="additive noise instead of rounding (STE) for the synthesis transform",
    )
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ltchm-probe")
    args = p.parse_args()
    if args.noise:
        import ltchm.models.ltchm as ltchm_model

        def noisy(y: torch.Tensor) -> torch.Tensor:
            return y + torch.empty_like(y).uniform_(-0.5, 0.5)

        ltchm_model.quantize_ste = noisy  # the training forward's only use of rounding
    overrides = {k: yaml_value(v) for k, v in args.set} | {"loss.lmbda": args.lmbda}
    configs = [REPO_ROOT / "configs" / "lambda_512.yaml", REPO_ROOT / "configs" / "cpu.yaml"]
    cfg = load_config(configs, overrides)
    shards = build_shards(args.out / "shards")
    val = [x for x, _ in iter_images(shards, "val", limit=16)]
    every = max(1, cfg.train.steps // args.evals)
    history = []
    t0 = time.perf_counter()
    for done, model, _ in bare_steps(cfg, shards, threads=2):
        if done % every == 0 or done == cfg.train.steps:
            v = validate(model, val)
            model.train()
            J = args.lmbda * 10 ** (-v["val_psnr"] / 10) + v["val_bpp"]
            history.append((done, round(v["val_bpp"], 4), round(v["val_psnr"], 2), round(J, 4)))
            print(args.name, f"{time.perf_counter() - t0:.0f} s", history[-1], flush=True)
    print("RESULT", args.name, json.dumps(history))
    return 0


if __name__ == "__main__":
    sys.exit(main())
