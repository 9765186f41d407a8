"""The bare PyTorch training loop the benchmarks compare ``ltchm train`` with: the same
model, seed, data order, optimiser split, schedule, clipping and loss as the platform's
worker, without Ray, DeepSpeed or MLflow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ltchm.losses import RateDistortionLoss
from ltchm.optim import learning_rate, split_parameters
from ltchm.runtime import tune_allocator
from ltchm.zoo import model_from_config
from pipeline.loader import make_train_loader

Clip = Literal["torch", "deepspeed"]


def clip_like_deepspeed(model: nn.Module, net: list[Tensor], max_norm: float, stage: int) -> None:
    """``clip_grad_norm_`` in DeepSpeed's arithmetic for ZeRO ``stage``. torch's sums its
    per-tensor norms otherwise: the clip factor then differs in its last bits, and a chaotic
    training run amplifies that (``benchmarks/training.py``).

    Stage 0 (``deepspeed.runtime.utils.clip_grad_norm_``): every trainable parameter of the
    module in module order, a parameter without a gradient as a zero one (DeepSpeed's
    gradient all-reduce gives it one, so the quantiles' zeros are in the sum), float32 norms,
    the sum of their squares, its root, grads times min(1, max_norm / (norm + 1e-6)). ZeRO
    stages: the optimiser's parameters, float64 norms, their squares summed, the root in
    float32, grads times 1 / max(1, (norm + 1e-6) / max_norm).
    """
    if stage == 0:
        params = [p for p in model.parameters() if p.requires_grad]
        zero = torch.zeros((), dtype=torch.float32)
        norms = torch.stack(
            [zero if p.grad is None else p.grad.detach().float().norm(2) for p in params]
        )
        total = norms.pow(2).sum().float().pow(0.5) * 1.0 / 1.0
        coef = torch.min(torch.tensor([1.0]), torch.tensor([float(max_norm)]) / (total + 1e-6))
    else:
        params = net
        grads = [p.grad for p in net if p.grad is not None]
        norms = torch.stack([torch.linalg.vector_norm(g.detach().double(), 2) for g in grads])
        total = norms.pow(2).sum().float().pow(0.5)
        total = torch.linalg.vector_norm(torch.stack([total]), 2)  # its one-group combination
        coef = 1.0 / torch.clamp((total + 1e-6) / max_norm, min=1.0)
    for p in params:
        if p.grad is not None:
            p.grad.mul_(coef)


def bare_steps(
    cfg: Any, shards: Path, threads: int, clip: Clip = "torch"
) -> Iterator[tuple[int, Any, float]]:
    """Train ``cfg.train.steps`` steps; yield (steps done, the model, that step's loss).
    ``clip`` picks the gradient-norm arithmetic: torch's, or DeepSpeed's (as the platform)."""
    tune_allocator()
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.train.seed)
    model = model_from_config(cfg.model).train()
    net, aux = split_parameters(model)
    opt = torch.optim.Adam(net, lr=cfg.train.lr, betas=(0.9, 0.999), eps=1e-8)
    aux_opt = torch.optim.Adam(aux, lr=cfg.train.aux_lr)
    criterion = RateDistortionLoss(cfg.loss.lmbda, cfg.loss.metric)
    loader = make_train_loader(
        shards,
        batch_size=cfg.train.batch_size,
        patch_size=cfg.train.patch_size,
        shuffle_buffer=cfg.data.shuffle_buffer,
        epoch_length=cfg.data.epoch_length,
        num_workers=cfg.train.loader_workers,
        seed=cfg.train.seed,
    )
    batches = iter(loader)
    for step in range(cfg.train.steps):
        try:
            x = next(batches)
        except StopIteration:
            batches = iter(loader)
            x = next(batches)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg.train, step)
        out = criterion(model(x), x)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if cfg.train.clip_grad_norm and clip == "deepspeed":
            clip_like_deepspeed(model, net, cfg.train.clip_grad_norm, cfg.deepspeed.zero_stage)
        elif cfg.train.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(net, cfg.train.clip_grad_norm)
        opt.step()
        aux_loss = model.aux_loss()
        aux_opt.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_opt.step()
        aux_opt.zero_grad(set_to_none=True)  # as the platform's worker: none left for a clip
        yield step + 1, model, out["loss"].item()
