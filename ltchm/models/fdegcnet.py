"""FDEGCNet (Fang, Gu, Wang, Zhang, Radioengineering 2025): the remote-sensing codec with
omni-dimensional dynamic attention in the main transforms (ODAM), efficient attention in the
hyperprior (HEAM) and a multi-kernel attention with a frequency-domain branch on the
hyper-latent (MCAM).

Layout, with N the channels of y and z (facts from the authors' released code):

* g_a: ResBlockWithStride(3 -> N), ResBlock, ResBlockWithStride, ODAM, ResBlock,
  ResBlockWithStride, ResBlock, conv/2 (no bias), ODAM -> y (N x H/16 x W/16).
* g_s: ODAM, ResBlock, up-block, ResBlock, up-block, ODAM, ResBlock, up-block, ResBlock,
  deconv/2 (N -> 3). Up-blocks are LTCHM's :class:`~ltchm.models.ltchm.UpsampleBlock`,
  which is the released decoder block layer for layer.
* h_a: HEAM, conv, conv, HEAM, conv/2, conv, conv/2 -> MCAM -> z (N x H/64 x W/64).
* h_s: MCAM (the same module as h_a's, shared weights), HEAM, conv, deconv/2, HEAM,
  conv (N -> 1.5N), deconv/2, conv (1.5N -> 2N) -> hyper features (2N).
* entropy: a 5x5 masked context (N -> 2N) and 1x1 convs 4N -> 640 -> 640 -> 9N (last
  without bias) giving a K = 3 Laplace mixture, scales = |.|; z under a factorised density
  of per-channel scalar layers (the released ``BitEstimator``, which is CompressAI's
  ``EntropyBottleneck`` with ``filters=(1, 1, 1)``).

Where we depart from the released code, and why:

* The released code estimates the rate of z on ``MCAM(z_hat)``, which is not what an entropy
  coder could code; we code ``z_hat`` itself, and the decoder applies MCAM to it.
* The released decoder's stride-1 transposed convolutions are written as convolutions (the
  same functions and parameter counts); its 9N outputs are read as [weights, means, scales]
  blocks rather than interleaved per component (a permutation of a learned layer).
* FGM's 3x3 convolution, which the released ``forward`` never calls, is left out (0.30 M of
  the released 14.26 M at N = 128).
* Scales are ``|.|`` as released, then bounded below by 0.11 as in every coder here.

The hyper-synthesis side (MCAM, HEAM, the context and the entropy parameters) is evaluated
by :class:`~ltchm.entropy.detforward.DetProgram` when coding, with the handlers registered
by :func:`det_program`. MCAM's two Fourier transforms get reproducible forms: its channel
gain applied to a spectrum is, the DFT being linear, the same gain applied in space; FGM's
product of a map with another map's spectrum is computed with integer-exact DFT matrix
products (:func:`dft_matrices`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import ResidualBlock, ResidualBlockWithStride, conv3x3
from torch import Tensor, nn

from ltchm.entropy.context import ContextMode, ContextModel
from ltchm.entropy.detforward import DetProgram
from ltchm.entropy.detmath import (
    DeterminismError,
    det_matmul,
    det_mean,
    det_sigmoid,
    det_softmax,
    pow2,
    quantize,
)
from ltchm.entropy.latent import decode_y, encode_y
from ltchm.entropy.mixture import MixtureParams, mixture_likelihood, split_params
from ltchm.models.coding import ReproducibleCodingModel
from ltchm.models.ltchm import UpsampleBlock, deconv

__all__ = [
    "HEAM",
    "MCAM",
    "ODAM",
    "AbsScales",
    "FDEGCNet",
    "FrequencyGate",
    "ODConv2d",
    "det_program",
    "dft_matrices",
]

STRIDE = 64  # y at 1/16, z at 1/64


class ODConv2d(nn.Module):
    """Omni-dimensional dynamic convolution (Li et al., ICLR 2022) as FDEGCNet uses it: a
    sample's kernel is a softmax mixture of ``kernel_num`` kernels, scaled per spatial tap,
    and its input channels and output filters are gated, all from the pooled input.

    Bias-free, "same" padding, stride 1. Samples are folded into the groups of one
    convolution (1x1 kernels: one batched matrix product), so there is no loop over them.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, kernel_num: int = 4, min_hidden: int = 16
    ) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        hidden = max(in_ch // 16, min_hidden)
        self.fc = nn.Conv2d(in_ch, hidden, 1, bias=False)
        self.bn = nn.BatchNorm2d(hidden)
        self.channel_fc = nn.Conv2d(hidden, in_ch, 1)
        self.filter_fc = nn.Conv2d(hidden, out_ch, 1)
        # a 1x1 kernel has one tap and a single kernel nothing to mix: no attention for them
        self.spatial_fc = nn.Conv2d(hidden, kernel_size**2, 1) if kernel_size > 1 else None
        self.kernel_fc = nn.Conv2d(hidden, kernel_num, 1) if kernel_num > 1 else None
        self.weight = nn.Parameter(torch.empty(kernel_num, out_ch, in_ch, kernel_size, kernel_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for w in self.weight:
            nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")

    def _normalize(self, h: Tensor) -> Tensor:
        # BatchNorm in training mode needs more than one value per channel; a batch of one
        # pooled map has one. Use the running statistics then, as IDConv does.
        if self.training and h.shape[0] == 1:
            n = self.bn
            return F.batch_norm(
                h, n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps
            )
        out: Tensor = self.bn(h)
        return out

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        k, O = self.kernel_size, self.out_ch
        a = F.relu(self._normalize(self.fc(x.mean(dim=(2, 3), keepdim=True))))
        gate_in = torch.sigmoid(self.channel_fc(a))
        gate_out = torch.sigmoid(self.filter_fc(a))
        weight = self.weight.unsqueeze(0)  # 1, n, O, C, k, k
        if self.kernel_fc is not None:
            weight = weight * self.kernel_fc(a).reshape(B, -1, 1, 1, 1, 1).softmax(dim=1)
        if self.spatial_fc is not None:
            weight = weight * torch.sigmoid(self.spatial_fc(a)).reshape(B, 1, 1, 1, k, k)
        kernel = weight.sum(dim=1).expand(B, O, C, k, k)
        x = x * gate_in
        if k == 1:
            out = torch.bmm(kernel.reshape(B, O, C), x.reshape(B, C, H * W)).reshape(B, O, H, W)
        else:
            out = F.conv2d(
                x.reshape(1, B * C, H, W), kernel.reshape(B * O, C, k, k), padding=k // 2, groups=B
            ).reshape(B, O, H, W)
        return out * gate_out

    def extra_repr(self) -> str:
        return f"{self.in_ch}, {self.out_ch}, kernel_size={self.kernel_size}"


class ODResBlock(nn.Module):
    """Bottleneck residual unit of ODConvs: 1x1 (C -> C/2), 3x3, 1x1 (C/2 -> C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ODConv2d(dim, dim // 2, 1),
            nn.ReLU(inplace=True),
            ODConv2d(dim // 2, dim // 2, 3),
            nn.ReLU(inplace=True),
            ODConv2d(dim // 2, dim, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x) + x
        return out


class ODAM(nn.Module):
    """Omni-dimensional attention model: ``x + trunk(x) * sigmoid(conv1x1(mask(x)))``, each
    branch three :class:`ODResBlock`."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(*(ODResBlock(dim) for _ in range(3)))
        self.mask = nn.Sequential(*(ODResBlock(dim) for _ in range(3)), nn.Conv2d(dim, dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = x + self.trunk(x) * torch.sigmoid(self.mask(x))
        return out


class HEAM(nn.Module):
    """Hyperprior efficient attention: channels split into ``groups``; within each, a
    directional branch (pooling along H and along W, a shared 1x1 convolution, gates, a
    per-channel normalisation) and a 3x3 branch weigh each other's positions through
    softmax-pooled channel descriptors, and their sum gates the input."""

    def __init__(self, dim: int, groups: int = 8) -> None:
        super().__init__()
        if dim % groups:
            raise ValueError(f"HEAM needs channels divisible by {groups}, got {dim}")
        self.groups = groups
        cg = dim // groups
        self.norm = nn.GroupNorm(cg, cg)
        self.conv1x1 = nn.Conv2d(cg, cg, 1)
        self.conv3x3 = nn.Conv2d(cg, cg, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        g = x.reshape(B * self.groups, -1, H, W)
        pooled = torch.cat([g.mean(dim=3, keepdim=True), g.mean(dim=2).unsqueeze(-1)], dim=2)
        x_h, x_w = self.conv1x1(pooled).split([H, W], dim=2)
        x1 = self.norm(g * x_h.sigmoid() * x_w.transpose(2, 3).sigmoid())
        x2 = self.conv3x3(g)
        a1 = x1.mean(dim=(2, 3)).softmax(dim=-1).unsqueeze(1)  # BG, 1, cg
        a2 = x2.mean(dim=(2, 3)).softmax(dim=-1).unsqueeze(1)
        w = torch.matmul(a1, x2.flatten(2)) + torch.matmul(a2, x1.flatten(2))  # BG, 1, HW
        return (g * w.reshape(-1, 1, H, W).sigmoid()).reshape(B, C, H, W)


def _spectral(x: Tensor) -> Tensor:
    # FFTs in float32 at least: there are no half-precision FFT kernels for every size
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class FrequencyGate(nn.Module):
    """MCAM's global branch (the released ``FGM``): one 1x1 projection multiplies the
    spectrum of another, back to space, magnitude; mixed with the input by learned
    per-channel weights (alpha starts at 0: the branch opens during training)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.alpha = nn.Parameter(torch.zeros(dim, 1, 1))
        self.beta = nn.Parameter(torch.ones(dim, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        spectrum = torch.fft.fft2(_spectral(self.conv2(x)))
        out = torch.fft.ifft2(_spectral(self.conv1(x)) * spectrum).abs().to(x.dtype)
        mixed: Tensor = out * self.alpha + x * self.beta
        return mixed


class MCAM(nn.Module):
    """Multi-kernel convolutional attention: depth-wise 1x3, 3x1, 3x3 and 1x1 kernels beside
    a global branch (a channel gain in the frequency domain, a pooled channel attention and
    :class:`FrequencyGate`), summed with the input, ReLU, 1x1 out."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.in_conv = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU())
        self.out_conv = nn.Conv2d(dim, dim, 1)
        self.dw_13 = nn.Conv2d(dim, dim, (1, 3), padding=(0, 1), groups=dim)
        self.dw_31 = nn.Conv2d(dim, dim, (3, 1), padding=(1, 0), groups=dim)
        self.dw_33 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.dw_11 = nn.Conv2d(dim, dim, 1, groups=dim)
        self.freq_gain = nn.Conv2d(dim, dim, 1)
        self.channel_gain = nn.Conv2d(dim, dim, 1)
        self.fgm = FrequencyGate(dim)

    def forward(self, x: Tensor) -> Tensor:
        u = self.in_conv(x)
        gain = self.freq_gain(u.mean(dim=(2, 3), keepdim=True))
        spectrum = torch.fft.fft2(_spectral(u)) * _spectral(gain)
        fca = torch.fft.ifft2(spectrum).abs().to(u.dtype)
        sca = self.channel_gain(fca.mean(dim=(2, 3), keepdim=True)) * fca
        local = self.dw_13(u) + self.dw_31(u) + self.dw_33(u) + self.dw_11(u)
        out: Tensor = self.out_conv(F.relu(x + local + self.fgm(sca)))
        return out


class AbsScales(nn.Module):
    """The scale block of [weights, means, scales] parameters as magnitudes."""

    def forward(self, x: Tensor) -> Tensor:
        cut = x.shape[1] * 2 // 3
        return torch.cat([x[:, :cut], x[:, cut:].abs()], dim=1)


class FDEGCNet(ReproducibleCodingModel):
    """The FDEGCNet codec (see the module docstring).

    Args:
        N: channels of y and z and of all transforms (128 in the released default; 192 low
            rates, 256 high in its training configs). Must be a multiple of 16 (HEAM's
            8 groups, ODAM's halved bottleneck).
        context: ``"autoregressive"`` (the released 5x5 masked convolution) or
            ``"checkerboard"``.
    """

    stride = STRIDE
    K = 3
    mixture = "laplace"

    def __init__(self, N: int = 128, context: ContextMode = "autoregressive") -> None:
        super().__init__()
        if N % 16:
            raise ValueError(f"FDEGCNet needs N divisible by 16, got {N}")
        self.N = N
        M = N * 3 // 2
        self.g_a = nn.Sequential(
            ResidualBlockWithStride(3, N, stride=2),
            ResidualBlock(N, N),
            ResidualBlockWithStride(N, N, stride=2),
            ODAM(N),
            ResidualBlock(N, N),
            ResidualBlockWithStride(N, N, stride=2),
            ResidualBlock(N, N),
            nn.Conv2d(N, N, 3, stride=2, padding=1, bias=False),
            ODAM(N),
        )
        self.g_s = nn.Sequential(
            ODAM(N),
            ResidualBlock(N, N),
            UpsampleBlock(N, N),
            ResidualBlock(N, N),
            UpsampleBlock(N, N),
            ODAM(N),
            ResidualBlock(N, N),
            UpsampleBlock(N, N),
            ResidualBlock(N, N),
            deconv(N, 3, 3),
        )
        self.h_a = nn.Sequential(
            HEAM(N),
            conv3x3(N, N),
            nn.LeakyReLU(inplace=True),
            conv3x3(N, N),
            nn.LeakyReLU(inplace=True),
            HEAM(N),
            conv3x3(N, N, stride=2),
            nn.LeakyReLU(inplace=True),
            conv3x3(N, N),
            nn.LeakyReLU(inplace=True),
            conv3x3(N, N, stride=2),
        )
        # applied to z before quantisation and to z_hat before h_s, with the same weights
        self.mcam = MCAM(N)
        self.h_s = nn.Sequential(
            HEAM(N),
            conv3x3(N, N),
            nn.LeakyReLU(inplace=True),
            deconv(N, N, 3),
            nn.LeakyReLU(inplace=True),
            HEAM(N),
            conv3x3(N, M),
            nn.LeakyReLU(inplace=True),
            deconv(M, M, 3),
            nn.LeakyReLU(inplace=True),
            conv3x3(M, 2 * N),
        )
        self.entropy_bottleneck = EntropyBottleneck(N, filters=(1, 1, 1))
        self.context_model = ContextModel(N, context)
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(4 * N, 640, 1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(640, 640, 1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(640, 3 * self.K * N, 1, bias=False),
            AbsScales(),
        )

    @property
    def context(self) -> ContextMode:
        return self.context_model.mode

    def mixture_params(self, ctx: Tensor, hyper: Tensor) -> MixtureParams:
        return split_params(self.entropy_parameters(torch.cat([ctx, hyper], dim=1)), self.K)

    def forward(self, x: Tensor) -> dict[str, Any]:
        """CompressAI's forward: reconstruction and the likelihoods of y and z.

        Training as released: additive uniform noise stands for rounding in the rate, the
        context and the synthesis alike. Eval: everything is rounded.
        """
        self.check_size(x)
        y = self.g_a(x)
        z = self.mcam(self.h_a(y))
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        hyper = self.h_s(self.mcam(z_hat))
        noise = torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else None
        y_hat = y + noise if noise is not None else torch.round(y)
        params = self.mixture_params(self.context_model(y_hat), hyper)
        y_likelihoods = mixture_likelihood(y_hat, params, "laplace")
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    # -- coding (tables: ltchm.models.coding) ----------------------------------------------
    def entropy_program(self) -> DetProgram:
        return det_program().compile(
            self.mcam, self.h_s, self.context_model, self.entropy_parameters
        )

    def _hyper(self, prog: DetProgram, z_hat: Tensor) -> Tensor:
        return prog.run(self.h_s, prog.run(self.mcam, z_hat))

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict[str, Any]:
        """Entropy-code a batch: ``{"strings": [y_strings, z_strings], "shape": z size}``."""
        self.check_size(x)
        prog = self._require_ready()
        y = self.g_a(x)
        z = self.mcam(self.h_a(y))
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        hyper = self._hyper(prog, z_hat)
        y_hat = torch.round(y).double()
        y_strings = [
            encode_y(self, prog, y_hat[i : i + 1], hyper[i : i + 1]) for i in range(len(x))
        ]
        return {"strings": [y_strings, z_strings], "shape": tuple(z.shape[-2:])}

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int]) -> dict[str, Tensor]:
        """Decode what :meth:`compress` wrote: ``{"x_hat": (B, 3, 64 h, 64 w) in [0, 1]}``."""
        prog = self._require_ready()
        y_strings, z_strings = strings
        if len(y_strings) != len(z_strings):
            raise ValueError("y and z strings differ in number")
        z_hat = self.entropy_bottleneck.decompress(z_strings, tuple(shape))
        hyper = self._hyper(prog, z_hat)
        y_hat = torch.cat(
            [decode_y(self, prog, s, hyper[i : i + 1]) for i, s in enumerate(y_strings)]
        )
        x_hat = self.g_s(y_hat.to(z_hat.dtype)).clamp_(0, 1)
        return {"x_hat": x_hat, "y_hat": y_hat}


# -- reproducible forms ------------------------------------------------------------------------


def _taylor_cos_sin(theta: float) -> tuple[float, float]:
    # IEEE +, *, / in a fixed order (libm's cos/sin may differ in the last bit between
    # platforms); |theta| <= pi, 40 terms: truncation far below float64 rounding
    c = s = 0.0
    term = 1.0
    for n in range(40):
        if n % 4 == 0:
            c += term
        elif n % 4 == 1:
            s += term
        elif n % 4 == 2:
            c -= term
        else:
            s -= term
        term = term * theta / (n + 1)
    return c, s


@functools.lru_cache(maxsize=32)
def dft_matrices(n: int) -> tuple[Tensor, Tensor]:
    """``(cos, sin)`` of ``2 pi j k / n`` as (1, n, n) float64, the same bits on every
    platform: the DFT matrix is ``cos - i sin``."""
    cos = torch.empty(n, n, dtype=torch.float64)
    sin = torch.empty(n, n, dtype=torch.float64)
    for j in range(n):
        for k in range(n):
            m = j * k % n
            m = m - n if 2 * m > n else m  # angle in [-pi, pi]
            cos[j, k], sin[j, k] = _taylor_cos_sin(2.0 * math.pi * m / n)
    return cos[None], sin[None]


def _left(a: Tensor, x: Tensor) -> Tensor:
    """``a @ x`` over H for (1, H, H) ``a`` and (B, C, H, W) ``x``."""
    return det_matmul(a.to(x.device), x)


def _right(x: Tensor, a: Tensor) -> Tensor:
    return det_matmul(x, a.to(x.device))


def _det_fgm(prog: DetProgram, m: FrequencyGate, x: Tensor) -> Tensor:
    x = x.double()
    x1, x2 = prog.run(m.conv1, x), prog.run(m.conv2, x)
    H, W = x.shape[-2:]
    ch, sh = dft_matrices(H)
    cw, sw = dft_matrices(W)
    # X = D_H x2 D_W with D = C - iS; A = D_H x2 = C x2 - i S x2
    a_r, a_i = _left(ch, x2), -_left(sh, x2)
    y_r = x1 * (_right(a_r, cw) + _right(a_i, sw))
    y_i = x1 * (_right(a_i, cw) - _right(a_r, sw))
    # inverse: (1 / HW) E_H Y E_W with E = C + iS
    p_r = _left(ch, y_r) - _left(sh, y_i)
    p_i = _left(ch, y_i) + _left(sh, y_r)
    q_r = _right(p_r, cw) - _right(p_i, sw)
    q_i = _right(p_r, sw) + _right(p_i, cw)
    mag = torch.sqrt(q_r * q_r + q_i * q_i) / (H * W)
    return mag * m.alpha.detach().double() + x * m.beta.detach().double()


def _det_mcam(prog: DetProgram, m: MCAM, x: Tensor) -> Tensor:
    x = x.double()
    u = prog.run(m.in_conv, x)
    gain = prog.run(m.freq_gain, det_mean(u, (2, 3), keepdim=True))
    # ifft2(g * fft2(u)) = g * u for a real per-channel g: the DFT is linear
    fca = gain.abs() * u.abs()
    sca = prog.run(m.channel_gain, det_mean(fca, (2, 3), keepdim=True)) * fca
    local = prog.run(m.dw_13, u) + prog.run(m.dw_31, u)
    local = local + prog.run(m.dw_33, u) + prog.run(m.dw_11, u)
    return prog.run(m.out_conv, (x + local + _det_fgm(prog, m.fgm, sca)).clamp_min(0.0))


def _det_instance_norm(x: Tensor, norm: nn.GroupNorm) -> Tensor:
    """GroupNorm with one channel per group: statistics over (H, W) from exact sums."""
    n = x.shape[2] * x.shape[3]
    bits = (52 - math.ceil(math.log2(max(n, 2)))) // 2 - 1  # n * (2**bits)**2 < 2**52
    if bits < 10:
        raise DeterminismError("normalisation over too many positions for exact sums")
    flat = x.double().flatten(2).transpose(1, 2)  # B, HW, C: one scale per (sample, channel)
    xi, e = quantize(flat, "position", bits)
    xi, scale = xi.transpose(1, 2), pow2(e).transpose(1, 2)  # B, C, HW and B, C, 1
    mean = xi.sum(dim=2, keepdim=True) / n
    var = (xi * xi).sum(dim=2, keepdim=True) / n - mean * mean
    out = ((xi - mean) / scale) / torch.sqrt(var / (scale * scale) + norm.eps)
    out = out * norm.weight.detach().double()[:, None] + norm.bias.detach().double()[:, None]
    return out.reshape(x.shape)


def _det_heam(prog: DetProgram, m: HEAM, x: Tensor) -> Tensor:
    B, C, H, W = x.shape
    g = x.double().reshape(B * m.groups, -1, H, W)
    pooled = torch.cat([det_mean(g, 3, keepdim=True), det_mean(g, 2).unsqueeze(-1)], dim=2)
    x_h, x_w = torch.split(prog.run(m.conv1x1, pooled), [H, W], dim=2)
    x1 = _det_instance_norm(g * det_sigmoid(x_h) * det_sigmoid(x_w.transpose(2, 3)), m.norm)
    x2 = prog.run(m.conv3x3, g)
    a1 = det_softmax(det_mean(x1, (2, 3)), dim=-1).unsqueeze(1)
    a2 = det_softmax(det_mean(x2, (2, 3)), dim=-1).unsqueeze(1)
    w = det_matmul(a1, x2.flatten(2)) + det_matmul(a2, x1.flatten(2))
    return (g * det_sigmoid(w.reshape(-1, 1, H, W))).reshape(B, C, H, W)


def _det_abs_scales(m: AbsScales, x: Tensor) -> Tensor:
    x = x.double()
    cut = x.shape[1] * 2 // 3
    return torch.cat([x[:, :cut], x[:, cut:].abs()], dim=1)


def det_program() -> DetProgram:
    """A :class:`DetProgram` that also evaluates FDEGCNet's entropy-path modules."""
    prog = DetProgram()
    prog.register(MCAM, functools.partial(_det_mcam, prog))
    prog.register(FrequencyGate, functools.partial(_det_fgm, prog))
    prog.register(HEAM, functools.partial(_det_heam, prog))
    prog.register(AbsScales, _det_abs_scales)
    return prog
