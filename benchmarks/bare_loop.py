"""The bare PyTorch training loop the benchmarks compare ``ltchm train`` with: the same
model, seed, data order, optimiser split, schedule, clipping and loss as the platform's
worker, without Ray, DeepSpeed or MLflow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ltchm.losses import RateDistortionLoss
from ltchm.optim import learning_rate, split_parameters
from ltchm.runtime import tune_allocator
from ltchm.zoo import model_from_config
from pipeline.loader import make_train_loader


def bare_steps(cfg: Any, shards: Path, threads: int) -> Iterator[tuple[int, Any, float]]:
    """Train ``cfg.train.steps`` steps; yield (steps done, the model, that step's loss)."""
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
        if cfg.train.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(net, cfg.train.clip_grad_norm)
        opt.step()
        aux_loss = model.aux_loss()
        aux_opt.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_opt.step()
        yield step + 1, model, out["loss"].item()
