"""The discretised K-component mixture that models y given the hyperprior and context.

Cheng et al. (2020), Eq. (1)-(2) of the LTCHM paper: the likelihood of an integer y_i is
``sum_k w_k * (F_k(y_i + 1/2) - F_k(y_i - 1/2))`` with F_k the CDF of a Gaussian (the
paper) or a Laplace (the authors' code) of mean mu_k and scale sigma_k.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from compressai.ops.bound_ops import LowerBoundFunction
from torch import Tensor

__all__ = ["LIKELIHOOD_BOUND", "SCALE_BOUND", "MixtureParams", "mixture_likelihood", "split_params"]

Family = Literal["gaussian", "laplace"]

SCALE_BOUND = 0.11  # CompressAI's lower bound on scales
LIKELIHOOD_BOUND = 1e-9


class MixtureParams(NamedTuple):
    """Raw mixture parameters, each (B, K, N, H, W): weight logits, means, scales."""

    logits: Tensor
    means: Tensor
    scales: Tensor


def split_params(params: Tensor, K: int) -> MixtureParams:
    """(B, 3*K*N, H, W) from the entropy-parameter network -> :class:`MixtureParams`."""
    B, C, H, W = params.shape
    if C % (3 * K):
        raise ValueError(f"{C} entropy parameters do not split into 3 x K={K} groups")
    p = params.reshape(B, 3, K, C // (3 * K), H, W)
    return MixtureParams(p[:, 0], p[:, 1], p[:, 2])


def _gaussian_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


def _laplace_cdf(x: Tensor) -> Tensor:
    # 0.5 - 0.5 sign(x) expm1(-|x|): exact in both tails
    return 0.5 - 0.5 * x.sign() * torch.expm1(-x.abs())


_CDF = {"gaussian": _gaussian_cdf, "laplace": _laplace_cdf}


def _lower_bound(x: Tensor, bound: float) -> Tensor:
    """CompressAI's LowerBound (its gradient lets values below the bound rise) with the bound
    on ``x``'s device: a module-level LowerBound keeps its buffer on the CPU, and the first
    GPU run failed on it (scripts/gpu_check.sh)."""
    out: Tensor = LowerBoundFunction.apply(x, torch.tensor([bound], dtype=x.dtype, device=x.device))
    return out


def mixture_likelihood(y: Tensor, params: MixtureParams, family: Family = "gaussian") -> Tensor:
    """Likelihood of each element of ``y`` (B, N, H, W) under the discretised mixture."""
    # In float32 even when the network runs in bf16 (autocast, ltchm.layers.precision): 8-bit
    # mantissas would round the tail masses, and with them the rate, far too coarsely.
    y = y.float()
    params = MixtureParams(*(t.float() for t in params))
    cdf = _CDF[family]
    weights = params.logits.softmax(dim=1)
    scales = _lower_bound(params.scales, SCALE_BOUND)
    # Evaluate on the lower tail, |y - mu| mirrored, for precision far from the mean.
    v = (y.unsqueeze(1) - params.means).abs()
    p = cdf((0.5 - v) / scales) - cdf((-0.5 - v) / scales)
    likelihood: Tensor = _lower_bound((weights * p).sum(dim=1), LIKELIHOOD_BOUND)
    return likelihood
