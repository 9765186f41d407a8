"""Arithmetic that gives bit-identical results on any device, thread count or batch.

Entropy decoding only works if the decoder rebuilds the encoder's probability tables bit for
bit. Floating point breaks that: a convolution or a sum is evaluated in a different order on
another thread count, batch size, BLAS or GPU, and transcendental functions differ between
libm and CUDA. We therefore compute the entropy-parameter path with two rules:

* every reduction (convolution, matrix product, sum) runs on float64 operands that hold
  integers (activations rounded to a fixed grid, weights to 15-bit mantissas), so every
  partial sum is an exact integer below 2**53 and the order of summation cannot matter;
* everything else is elementwise IEEE-754 arithmetic (+, -, *, /, sqrt, floor, round, min,
  max) in float64, one operation per kernel, which IEEE specifies to be correctly rounded and
  hence identical everywhere; exp and erfc are built from these operations here instead of
  calling libm/CUDA.

The results approximate the float32 network to ~1e-6 relative, so the codec's rate matches
the model's estimate; what they guarantee is that encoder and decoder agree exactly.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ACT_BITS",
    "DeterminismError",
    "IntWeights",
    "det_conv2d",
    "det_conv_transpose2d",
    "det_erfc",
    "det_exp",
    "det_gelu",
    "det_layer_norm",
    "det_matmul",
    "det_mean",
    "det_sigmoid",
    "det_softmax",
    "det_sum",
    "deterministic_kernels",
    "pow2",
    "quantize",
    "rint",
    "scale_bits",
]

ACT_BITS = 22  # significant bits of activations entering a reduction
WEIGHT_BITS = 15  # significant bits of weights, per output channel
EXACT_LIMIT = 2.0**52  # every partial sum stays below this, so float64 holds it exactly

# How an activation tensor is scaled to integers before a reduction: one power of two per
# sample ("sample"), per spatial position over the channels ("position", for 1x1 layers whose
# outputs must not depend on other positions), or a fixed number of fractional bits (int).
Scale = str | int


class DeterminismError(RuntimeError):
    """A value left the range in which the arithmetic is exact; the result would not be
    reproducible, so coding stops instead of writing a file another machine cannot read."""


@contextlib.contextmanager
def deterministic_kernels() -> Iterator[None]:
    """cuDNN may pick FFT/Winograd convolutions, which are inexact even on integer operands;
    the native kernels are plain sums of products."""
    with torch.backends.cudnn.flags(enabled=False):
        yield


def pow2(k: Tensor) -> Tensor:
    """2**k for integer-valued ``k`` in [-1022, 1023], assembled from the IEEE bit pattern
    (``torch.pow``/``ldexp`` are not guaranteed exact on every device)."""
    return ((k.long() + 1023) << 52).view(torch.float64)


def rint(x: Tensor) -> Tensor:
    """Round half to even: exact, and the same IEEE operation on every device."""
    return torch.round(x)


def scale_bits(x: Tensor, scale: Scale, bits: int = ACT_BITS) -> Tensor:
    """Exponents ``e`` (broadcastable to ``x``) with ``|x| * 2**e < 2**bits``."""
    if isinstance(scale, int):
        return torch.full((1,) * x.dim(), float(scale), dtype=torch.float64, device=x.device)
    if scale == "sample":
        dims = tuple(range(1, x.dim()))
    elif scale == "position":
        dims = (1,)
    else:
        raise ValueError(f"unknown scale {scale!r}")
    peak = x.detach().double().abs().amax(dim=dims, keepdim=True)
    _, e = torch.frexp(peak)  # exact: peak < 2**e
    return torch.where(peak > 0, bits - e.double(), torch.zeros_like(peak)).clamp(-1000, 1000)


def quantize(x: Tensor, scale: Scale = "sample", bits: int = ACT_BITS) -> tuple[Tensor, Tensor]:
    """``(round(x * 2**e), e)``: integers (as float64) and their exponents."""
    e = scale_bits(x, scale, bits)
    return rint(x.double() * pow2(e)), e


class IntWeights:
    """A weight tensor as integers with one power-of-two scale per output channel."""

    def __init__(self, weight: Tensor, out_dim: int = 0) -> None:
        w = weight.detach().double().cpu()
        reduce = [d for d in range(w.dim()) if d != out_dim]
        peak = w.abs().amax(dim=reduce) if reduce else w.abs()
        # peak = m * 2**e with m in [0.5, 1) exactly (frexp), so peak * 2**(15 - e) lies in
        # [2**14, 2**15): 15 significant bits per output channel, decided without rounding.
        _, e = torch.frexp(peak)
        exp = torch.where(peak > 0, WEIGHT_BITS - e.double(), torch.zeros_like(peak))
        shape = [1] * w.dim()
        shape[out_dim] = -1
        self.shift = exp.clamp(-1000, 1000).reshape(shape)
        self.ints = rint(w * pow2(self.shift))
        abs_sum = self.ints.abs().sum(dim=reduce) if reduce else self.ints.abs()
        # With activations below 2**ACT_BITS every partial sum is bounded by this.
        if float(abs_sum.max()) * 2.0**ACT_BITS >= EXACT_LIMIT:
            raise DeterminismError(f"layer with fan-in {self.ints[0].numel()} is too wide")
        self.out_dim = out_dim

    def to(self, device: torch.device) -> IntWeights:
        if self.ints.device != device:
            self.ints = self.ints.to(device)
            self.shift = self.shift.to(device)
        return self


def _rescale(
    acc: Tensor, e_x: Tensor, w: IntWeights, bias: Tensor | None, channel_dim: int
) -> Tensor:
    shape = [1] * acc.dim()
    shape[channel_dim] = -1
    out = acc * pow2(-(e_x + w.shift.reshape(shape)))
    if bias is not None:
        out = out + bias.detach().double().reshape(shape)
    return out


def _check_int_input(xi: Tensor, scale: Scale) -> None:
    # A fixed grid does not bound the integers by construction; check it.
    if isinstance(scale, int) and xi.numel() and float(xi.abs().max()) >= 2.0**ACT_BITS:
        raise DeterminismError("activations overflow the exact range of the entropy model")


Pair = int | tuple[int, ...]  # an int or a (height, width) pair, as torch's layers hold them


def _pair(v: Pair) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _int_conv2d(
    xi: Tensor, w: Tensor, stride: tuple[int, int], padding: tuple[int, int], groups: int
) -> Tensor:
    """Convolution of integer-valued float64 tensors as matrix products.

    Written with unfold/matmul rather than ``F.conv2d``: PyTorch's float64 CPU convolution
    is pathologically slow (benchmarks/RESULTS.md, "Codec"), and cuDNN may choose FFT
    algorithms; on integer operands any summation order is exact.
    """
    B, C, H, W = xi.shape
    O, Cg, kh, kw = w.shape
    Ho = (H + 2 * padding[0] - kh) // stride[0] + 1
    Wo = (W + 2 * padding[1] - kw) // stride[1] + 1
    if groups == 1 and padding == (0, 0) and (kh, kw) == (H, W):
        # kernel-sized inputs (the autoregressive decoder's neighbourhoods; 1x1 layers on
        # gathered positions): one matrix product, samples as rows
        return (xi.reshape(B, -1) @ w.reshape(O, -1).T).reshape(B, O, 1, 1)
    if (kh, kw) == (1, 1) and stride == (1, 1) and padding == (0, 0) and groups == 1:
        # every position of every sample is a column of one matrix product
        cols = xi.permute(1, 0, 2, 3).reshape(C, B * H * W)
        return (w.reshape(O, C) @ cols).reshape(O, B, H, W).permute(1, 0, 2, 3)
    cols = F.unfold(xi, (kh, kw), padding=padding, stride=stride)  # B, C*kh*kw, L
    if groups == 1:
        out = w.reshape(O, -1) @ cols
    elif groups == C and Cg == 1:
        if O != C:
            raise ValueError("depth-wise convolution with a channel multiplier")
        taps = cols.reshape(B, C, kh * kw, -1) * w.reshape(C, kh * kw, 1)
        out = taps.sum(dim=2)
    else:
        cols = cols.reshape(B, groups, Cg * kh * kw, -1)
        out = w.reshape(groups, O // groups, -1) @ cols
    return out.reshape(B, O, Ho, Wo)


def det_conv2d(
    x: Tensor,
    w: IntWeights,
    bias: Tensor | None,
    stride: Pair = 1,
    padding: Pair = 0,
    groups: int = 1,
    scale: Scale = "sample",
) -> Tensor:
    """A 2-D convolution, exact on the quantized input."""
    xi, e = quantize(x, scale)
    _check_int_input(xi, scale)
    acc = _int_conv2d(xi, w.to(xi.device).ints, _pair(stride), _pair(padding), groups)
    return _rescale(acc, e, w, bias, 1)


def det_conv_transpose2d(
    x: Tensor,
    w: IntWeights,
    bias: Tensor | None,
    stride: Pair,
    padding: Pair,
    output_padding: Pair,
) -> Tensor:
    """A 2-D transposed convolution (weights laid out in, out, kH, kW), exact on the input:
    a matrix product scattered back with ``fold`` (sums of integers)."""
    xi, e = quantize(x, "sample")
    B, C, H, W = xi.shape
    _, O, kh, kw = w.ints.shape
    (sh, sw), (ph, pw), (oh, ow) = _pair(stride), _pair(padding), _pair(output_padding)
    Ho = (H - 1) * sh - 2 * ph + kh + oh
    Wo = (W - 1) * sw - 2 * pw + kw + ow
    cols = w.to(xi.device).ints.reshape(C, O * kh * kw).transpose(0, 1) @ xi.reshape(B, C, H * W)
    # fold the columns onto the unpadded-output canvas, then crop the padding away
    full = F.fold(cols, (Ho + 2 * ph, Wo + 2 * pw), (kh, kw), stride=(sh, sw))
    acc = full[:, :, ph : ph + Ho, pw : pw + Wo]
    return _rescale(acc, e, w, bias, 1)


def det_linear(x: Tensor, w: IntWeights, bias: Tensor | None) -> Tensor:
    """``x @ W.T + b`` over the last dimension; one scale per leading index."""
    xi, e = quantize(x, "sample")
    acc = xi @ w.to(xi.device).ints.transpose(0, 1)
    return _rescale(acc, e, w, bias, -1)


def det_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` of two activations (matrices in the last two dimensions), each rounded with
    one scale per leading index to as many bits as the inner dimension leaves exact."""
    inner = a.shape[-1]
    bits = min(ACT_BITS, (51 - math.ceil(math.log2(max(inner, 2)))) // 2)
    if bits < 8:
        raise DeterminismError("matmul inner dimension too large for exact sums")
    ai, ea = quantize(a, "sample", bits)
    bi, eb = quantize(b, "sample", bits)
    return (ai @ bi) * pow2(-(ea + eb))


def det_sum(x: Tensor, dim: int | tuple[int, ...], keepdim: bool = False) -> Tensor:
    """Sum over ``dim`` of ``x`` rounded to 22 significant bits per sample (exact, so the
    order of summation cannot matter)."""
    xi, e = quantize(x, "sample")
    n = math.prod(x.shape[d] for d in ((dim,) if isinstance(dim, int) else dim))
    if n >= 2**30:
        raise DeterminismError("sum over too many elements for exact arithmetic")
    s = xi.sum(dim=dim, keepdim=keepdim)
    return s * pow2(-(e if keepdim else e.reshape(e.shape[0], *([1] * (s.dim() - 1)))))


def det_mean(x: Tensor, dim: int | tuple[int, ...], keepdim: bool = False) -> Tensor:
    n = math.prod(x.shape[d] for d in ((dim,) if isinstance(dim, int) else dim))
    return det_sum(x, dim, keepdim) / n


_LN2_HI = 0.6931471803691238  # ln 2 split so that k * _LN2_HI is exact for |k| < 2**20
_LN2_LO = 1.9082149292705877e-10
_INV_LN2 = 1.4426950408889634


def det_exp(x: Tensor) -> Tensor:
    """exp(x) from IEEE-exact operations: range reduction by ln 2 and a degree-13 Taylor
    polynomial (relative error < 2e-16 on the reduced interval)."""
    # In-place steps, each the same IEEE operation as the plain expression in its comment:
    # the entropy coder evaluates this over millions of bins, where fresh temporaries
    # (page faults) cost more than the arithmetic.
    x = x.double().clamp(-700.0, 700.0)
    k = rint(x * _INV_LN2)
    r = torch.sub(x, k * _LN2_HI, out=x).sub_(k * _LN2_LO)  # (x - k*HI) - k*LO, |r| <= ln2/2
    p = torch.full_like(r, 1.0 / math.factorial(13))
    for n in range(12, -1, -1):
        p.mul_(r).add_(1.0 / math.factorial(n))  # p = p * r + 1/n!
    return p.mul_(pow2(k))


def det_erfc(x: Tensor) -> Tensor:
    """erfc(x) with relative error < 1.2e-7 everywhere (Numerical Recipes' Chebyshev fit),
    built on :func:`det_exp`."""
    x = x.double()
    z = x.abs()
    t = 1.0 / (0.5 * z).add_(1.0)  # 1 / (1 + z/2)
    coeffs = (
        -1.26551223,
        1.00002368,
        0.37409196,
        0.09678418,
        -0.18628806,
        0.27886807,
        -1.13520398,
        1.48851587,
        -0.82215223,
        0.17087277,
    )
    poly = torch.full_like(t, coeffs[-1])
    for c in coeffs[-2::-1]:
        poly.mul_(t).add_(c)  # poly = poly * t + c
    ans = det_exp(z.mul_(z).neg_().add_(poly)).mul_(t)  # t * exp(-z*z + poly); z is spent
    return torch.where(x >= 0, ans, 2.0 - ans)


def det_sigmoid(x: Tensor) -> Tensor:
    return 1.0 / (1.0 + det_exp(-x.double()))


def det_gelu(x: Tensor) -> Tensor:
    """x * Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2."""
    x = x.double()
    return x * (0.5 * det_erfc(x * -0.7071067811865476))


def det_softmax(x: Tensor, dim: int) -> Tensor:
    """Softmax whose normaliser is an exact sum of grid-rounded exponentials."""
    x = x.double()
    m = x.amax(dim=dim, keepdim=True)  # exact
    e = rint(det_exp(x - m) * 2.0**30)  # integers <= 2**30
    return e / e.sum(dim=dim, keepdim=True)


def det_layer_norm(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, dim: int = -1
) -> Tensor:
    """LayerNorm over ``dim`` (the channels) with statistics from exact integer sums."""
    x = x.double()
    n = x.shape[dim]
    if n >= 2**12:
        raise DeterminismError("layer norm over too many channels for exact sums")
    xi, e = quantize(x.movedim(dim, 1), "position", 20)  # squares < 2**40, sums < 2**52
    xi, e = xi.movedim(1, dim), e.movedim(1, dim)
    s1 = xi.sum(dim=dim, keepdim=True)
    s2 = (xi * xi).sum(dim=dim, keepdim=True)
    mean = s1 / n
    var = s2 / n - mean * mean
    scale = pow2(e)
    rstd = 1.0 / torch.sqrt(var / (scale * scale) + eps)
    out = ((xi - mean) / scale) * rstd
    shape = [1] * x.dim()
    shape[dim] = -1
    if weight is not None:
        out = out * weight.detach().double().reshape(shape)
    if bias is not None:
        out = out + bias.detach().double().reshape(shape)
    return out
