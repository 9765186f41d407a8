import math

import pytest
import torch
from compressai.entropy_models import GaussianConditional

from ltchm.entropy.context import ContextModel, anchor_mask
from ltchm.entropy.mixture import MixtureParams, mixture_likelihood, split_params


def test_single_gaussian_equals_compressai() -> None:
    torch.manual_seed(0)
    y = torch.randint(-20, 20, (2, 8, 5, 5)).float()
    means = torch.randn(2, 8, 5, 5) * 3
    scales = torch.rand(2, 8, 5, 5) * 5 + 0.05
    ours = mixture_likelihood(
        y, MixtureParams(torch.zeros(2, 1, 8, 5, 5), means[:, None], scales[:, None])
    )
    gc = GaussianConditional(None)
    ref = gc._likelihood(y, scales.clamp_min(0.11), means)
    torch.testing.assert_close(ours, ref.clamp_min(1e-9), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_mixture_sums_to_one_over_the_integers(family: str) -> None:
    torch.manual_seed(1)
    K, N = 3, 4
    params = MixtureParams(
        torch.randn(1, K, N, 1, 1),
        torch.randn(1, K, N, 1, 1) * 4,
        torch.rand(1, K, N, 1, 1) * 3 + 0.2,
    )
    support = torch.arange(-200, 201).float()
    y = support.reshape(1, 1, -1, 1).expand(1, N, -1, 1)
    p = mixture_likelihood(y, MixtureParams(*(t.expand(1, K, N, 401, 1) for t in params)), family)
    torch.testing.assert_close(p.sum(dim=2), torch.ones(1, N, 1), rtol=1e-5, atol=1e-5)


def test_laplace_closed_form() -> None:
    b = 1.7
    p = mixture_likelihood(
        torch.zeros(1, 1, 1, 1),
        MixtureParams(
            torch.zeros(1, 1, 1, 1, 1), torch.zeros(1, 1, 1, 1, 1), torch.full((1, 1, 1, 1, 1), b)
        ),
        "laplace",
    )
    assert math.isclose(float(p), 1 - math.exp(-0.5 / b), rel_tol=1e-6)


def test_split_params_layout() -> None:
    p = torch.arange(2 * 9 * 4).float().reshape(2, 36, 1, 1)
    mp = split_params(p, K=3)
    assert mp.logits.shape == (2, 3, 4, 1, 1)
    assert float(mp.means[0, 0, 0]) == 12 and float(mp.scales[0, 0, 0]) == 24


def test_autoregressive_context_is_causal() -> None:
    torch.manual_seed(0)
    ctx = ContextModel(4, "autoregressive")
    y = torch.randn(1, 4, 7, 7)
    base = ctx(y)
    y2 = y.clone()
    y2[:, :, 3, 3] += 5.0
    changed = (ctx(y2) - base).abs().sum(1)[0] > 0
    for i in range(7):
        for j in range(7):
            after = (i, j) > (3, 3) and abs(i - 3) <= 2 and abs(j - 3) <= 2
            assert bool(changed[i, j]) == after, (i, j)


def test_checkerboard_context_sees_only_anchors() -> None:
    torch.manual_seed(0)
    ctx = ContextModel(4, "checkerboard")
    y = torch.randn(1, 4, 6, 6)
    anchors = anchor_mask(6, 6)
    base = ctx(y)
    assert (base[..., anchors] == 0).all()
    y2 = y.clone()
    y2[..., ~anchors] += torch.randn_like(y2[..., ~anchors])
    torch.testing.assert_close(ctx(y2), base)
