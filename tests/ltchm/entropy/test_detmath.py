"""The reproducible arithmetic: accuracy against float references, exactness, invariance."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

from ltchm.entropy import detmath as dm
from ltchm.entropy.coding import mixture_rows, mixture_weights


def test_transcendentals_match_references() -> None:
    x = torch.linspace(-40, 40, 20001, dtype=torch.float64)
    assert float(((dm.det_exp(x) - torch.exp(x)) / torch.exp(x)).abs().max()) < 1e-15
    z = torch.linspace(-5, 26, 20001, dtype=torch.float64)
    ref = torch.special.erfc(z)
    assert float(((dm.det_erfc(z) - ref) / ref).abs().max()) < 2e-7
    assert float((dm.det_gelu(x) - F.gelu(x)).abs().max()) < 1e-7
    assert float((dm.det_sigmoid(x) - torch.sigmoid(x)).abs().max()) < 1e-15


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def test_the_coder_arithmetic_keeps_its_bits() -> None:
    """Every .ltc file was written with these exact values: a change of a single bit (an
    operation reordered, fused or made approximate) would make old files undecodable."""
    x = torch.arange(-300_000, 300_001, dtype=torch.float64) / 400
    x_copy = x.clone()
    assert _digest(dm.det_exp(x).numpy().tobytes()) == "a7be85e6ab30dd07"
    assert _digest(dm.det_erfc(x / 16).numpy().tobytes()) == "4ae6025521312d1e"
    assert torch.equal(x, x_copy)  # the in-place steps never touch the argument
    dm.det_erfc(x)
    assert torch.equal(x, x_copy)
    g = torch.arange(-9, 9, dtype=torch.float64).reshape(6, 3) / 3
    w, mu, sc = mixture_weights(g * 2), g * 7, g.abs() * 9 + 0.05
    lo = torch.floor(mu[:, 0]) - 64
    for family, digest in (("gaussian", "6e7a6019d6d247fe"), ("laplace", "b3c4a5fb686ec536")):
        assert _digest(mixture_rows(w, mu, sc, lo, 128, family).probs.tobytes()) == digest


def test_rint_and_pow2_are_exact() -> None:
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 3.49999, 2.0**40 + 0.5], dtype=torch.float64)
    assert torch.equal(dm.rint(x), torch.round(x))
    k = torch.arange(-1000, 1000, dtype=torch.float64)
    assert torch.equal(dm.pow2(k), torch.tensor([2.0 ** int(i) for i in k], dtype=torch.float64))


def test_int_weights_have_15_bit_mantissas() -> None:
    w = dm.IntWeights(torch.randn(6, 4, 3, 3) * torch.logspace(-3, 3, 6)[:, None, None, None])
    peak = w.ints.abs().amax(dim=(1, 2, 3))
    assert ((peak >= 2**14) & (peak < 2**15 + 1)).all()
    assert torch.equal(w.ints, torch.round(w.ints))


@pytest.mark.parametrize(
    ("cin", "cout", "k", "stride", "pad", "groups"),
    [
        (8, 16, 3, 1, 1, 1),
        (8, 16, 3, 2, 1, 1),
        (8, 16, 1, 1, 0, 1),
        (8, 8, 7, 1, 3, 8),
        (16, 8, 5, 1, 2, 1),
        (8, 16, 5, 1, 0, 1),
    ],
)
def test_conv_matches_float64(cin, cout, k, stride, pad, groups) -> None:
    torch.manual_seed(0)
    x, w, b = torch.randn(2, cin, 7, 9), torch.randn(cout, cin // groups, k, k), torch.randn(cout)
    ref = F.conv2d(x.double(), w.double(), b.double(), stride, pad, 1, groups)
    out = dm.det_conv2d(x, dm.IntWeights(w), b, stride, pad, groups)
    assert out.shape == ref.shape
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-4


@pytest.mark.parametrize(("k", "size"), [(3, (5, 7)), (1, (4, 4)), (3, (1, 1))])
def test_transposed_conv_matches_float64(k, size) -> None:
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 6, *size), torch.randn(6, 4, k, k), torch.randn(4)
    ref = F.conv_transpose2d(x.double(), w.double(), b.double(), 2, k // 2, 1)
    out = dm.det_conv_transpose2d(x, dm.IntWeights(w, out_dim=1), b, 2, k // 2, 1)
    assert out.shape == ref.shape
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-4


def test_layer_norm_softmax_matmul() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 64, 5, 6) * 30 + 4
    ln = torch.nn.LayerNorm(64)
    ref = ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).double().detach()
    out = dm.det_layer_norm(x, ln.weight, ln.bias, ln.eps, dim=1)
    assert float((out - ref).abs().max()) < 1e-5
    logits = torch.randn(3, 4, 16, 16, dtype=torch.float64) * 4
    assert float((dm.det_softmax(logits, -1) - logits.softmax(-1)).abs().max()) < 1e-8
    a, b = torch.randn(3, 16, 32), torch.randn(3, 32, 16)
    assert float((dm.det_matmul(a, b) - (a @ b).double()).abs().max()) < 1e-4


def test_results_do_not_depend_on_batch_or_threads() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 16, 9, 9)
    w = dm.IntWeights(torch.randn(24, 16, 3, 3))
    full = dm.det_conv2d(x, w, None, 1, 1)
    alone = torch.cat([dm.det_conv2d(x[i : i + 1], w, None, 1, 1) for i in range(4)])
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = dm.det_conv2d(x, w, None, 1, 1)
    finally:
        torch.set_num_threads(prev)
    assert torch.equal(full, alone) and torch.equal(full, single)


def test_fixed_grid_overflow_is_an_error() -> None:
    w = dm.IntWeights(torch.randn(4, 4, 1, 1))
    with pytest.raises(dm.DeterminismError):
        dm.det_conv2d(torch.full((1, 4, 2, 2), 2.0**30), w, None, scale=0)
