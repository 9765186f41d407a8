"""A single-process fit on a handful of images, for demos, tests and benchmarks.

Production training is ``jobs.train`` (DeepSpeed on Ray); this is the same loss and the same
optimiser split in a plain loop, small enough to run in a minute on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ltchm.losses import RateDistortionLoss
from ltchm.models import CodingModel
from ltchm.optim import split_parameters

__all__ = ["quick_fit", "random_crops"]


def random_crops(
    images: Sequence[Tensor], batch: int, size: int, generator: torch.Generator
) -> Tensor:
    """A (batch, 3, size, size) batch of random crops with random flips."""
    out = []
    for _ in range(batch):
        img = images[int(torch.randint(len(images), (1,), generator=generator))]
        _, H, W = img.shape
        if size > H or size > W:
            img = F.pad(img[None], (0, max(size - W, 0), 0, max(size - H, 0)), mode="replicate")[0]
            _, H, W = img.shape
        top = int(torch.randint(H - size + 1, (1,), generator=generator))
        left = int(torch.randint(W - size + 1, (1,), generator=generator))
        crop = img[:, top : top + size, left : left + size]
        if torch.rand((), generator=generator) < 0.5:
            crop = crop.flip(-1)
        if torch.rand((), generator=generator) < 0.5:
            crop = crop.flip(-2)
        out.append(crop)
    return torch.stack(out)


def quick_fit(
    model: CodingModel,
    images: Sequence[Tensor],
    steps: int,
    lmbda: float,
    patch: int = 128,
    batch: int = 4,
    lr: float = 1e-4,
    aux_lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Train ``model`` for ``steps`` steps; return the per-step losses."""
    gen = torch.Generator().manual_seed(seed)
    criterion = RateDistortionLoss(lmbda)
    net, aux = split_parameters(model)
    opt = torch.optim.Adam(net, lr=lr)
    aux_opt = torch.optim.Adam(aux, lr=aux_lr)
    model.train()
    history = []
    for _ in tqdm(range(steps), desc="fit", disable=not progress, leave=False):
        x = random_crops(images, batch, patch, gen)
        out = criterion(model(x), x)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net, 1.0)
        opt.step()
        aux_loss = model.aux_loss()
        aux_opt.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_opt.step()
        history.append({k: v.item() for k, v in out.items()} | {"aux": aux_loss.item()})
    model.eval()
    return history
