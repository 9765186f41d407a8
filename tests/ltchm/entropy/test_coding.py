"""Per-element mixture coding: exact round trips, escapes, rate against the likelihoods."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ltchm.entropy import coding
from ltchm.entropy.coding import (
    ElementDists,
    EscapeReader,
    EscapeWriter,
    YDecoder,
    YEncoder,
    mixture_weights,
    windows,
)
from ltchm.entropy.latent import groups
from ltchm.entropy.mixture import MixtureParams, mixture_likelihood


def test_exp_golomb_round_trip() -> None:
    values = [1, -1, 2, -7, 1000, -123456, 2**40]
    w = EscapeWriter()
    for v in values:
        w.write(v)
    r = EscapeReader(w.getvalue())
    assert [r.read() for _ in values] == values
    with pytest.raises(ValueError, match="corrupt"):
        r.read()


def _code(
    values: torch.Tensor, w: torch.Tensor, means: torch.Tensor, scales: torch.Tensor, family: str
) -> tuple[bytes, bytes, list[ElementDists], list[np.ndarray]]:
    lo, width = windows(w, means, scales, family)
    enc, groups_, coded = YEncoder(), [], []
    for v in torch.unique(width):
        idx = torch.nonzero(width == v).squeeze(1)
        dists = ElementDists(w[idx], means[idx], scales[idx], lo[idx], int(v), family)
        enc.add(values[idx].long().numpy(), dists)
        groups_.append(dists)
        coded.append(values[idx].long().numpy())
    ans, esc = enc.finish()
    return ans, esc, groups_, coded


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_round_trip_and_rate(family: str) -> None:
    torch.manual_seed(0)
    n, K = 6000, 3
    logits, means = torch.randn(n, K), torch.randn(n, K) * 3
    scales = torch.rand(n, K) * 2 + 0.05
    w = mixture_weights(logits)
    comp = torch.multinomial(w.float(), 1).squeeze(1)
    mu = means.gather(1, comp[:, None]).squeeze(1)
    sc = scales.clamp_min(0.11).gather(1, comp[:, None]).squeeze(1)
    noise = (
        torch.randn(n) if family == "gaussian" else torch.distributions.Laplace(0, 1).sample((n,))
    )
    values = torch.round(mu + sc * noise)
    values[:4] = torch.tensor([500.0, -900.0, 70000.0, -(2.0**20)])  # escapes
    ans, esc, groups_, coded = _code(values, w, means, scales, family)
    dec = YDecoder(ans, esc)
    for dists, expect in zip(groups_, coded, strict=True):
        assert np.array_equal(dec.decode(dists), expect)
    lik = mixture_likelihood(
        values[4:].reshape(1, 1, -1, 1),
        MixtureParams(*(t[4:].T.reshape(1, K, 1, -1, 1) for t in (logits, means, scales))),
        family,
    )
    estimate = float(-torch.log2(lik).sum())
    assert 8 * (len(ans) + len(esc)) < 1.01 * estimate + 4000  # + the four escapes


def test_rows_are_computed_in_bounded_chunks_that_do_not_change_the_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Wide windows (large scales) are coded a bounded table at a time, to the same bytes."""
    torch.manual_seed(1)
    n, K = 3000, 3
    w = mixture_weights(torch.randn(n, K))
    means = torch.randn(n, K) * 20
    scales = torch.rand(n, K) * 300 + 0.1  # windows up to MAX_WIDTH
    values = torch.round(means[:, 0] + scales[:, 0] * torch.randn(n))
    whole = _code(values, w, means, scales, "gaussian")[:2]
    monkeypatch.setattr(coding, "ROW_ENTRIES", 5000)
    ans, esc, groups_, coded = _code(values, w, means, scales, "gaussian")
    assert (ans, esc) == whole
    assert max(d.width for d in groups_) == coding.MAX_WIDTH
    for d in groups_:
        spans = [range(len(d))[c] for c in d.chunks()]
        assert [i for s in spans for i in s] == list(range(len(d)))
        assert all(len(s) * (d.width + 1) <= 5000 for s in spans)
    dec = YDecoder(ans, esc)
    for dists, expect in zip(groups_, coded, strict=True):
        assert np.array_equal(dec.decode(dists), expect)


def test_windows_are_powers_of_two_covering_the_means() -> None:
    torch.manual_seed(0)
    means, scales = torch.randn(100, 3) * 10, torch.rand(100, 3) * 3
    lo, width = windows(mixture_weights(torch.randn(100, 3)), means, scales, "gaussian")
    assert ((width.log2() % 1) == 0).all() and (width >= 2).all()
    assert (lo[:, None] <= means.floor()).all() and (
        means.ceil() < lo[:, None] + width[:, None]
    ).all()


def test_coding_groups() -> None:
    ar = groups("autoregressive", 4, 6)
    assert sum(len(g) for g in ar) == 24 and len(ar) == 3 * 3 + 6
    seen = set()
    for g in ar:  # every causal neighbour of a position is in an earlier group
        for h, w in g:
            for dh in (-2, -1, 0):
                for dw in range(-2, 3):
                    if (dh, dw) < (0, 0) and 0 <= h + dh < 4 and 0 <= w + dw < 6:
                        assert (h + dh, w + dw) in seen
        seen.update(map(tuple, g))
    cb = groups("checkerboard", 3, 3)
    assert [len(g) for g in cb] == [5, 4]
