"""TCM (Liu, Sun & Katto, CVPR 2023): learned image compression with mixed Transformer-CNN
architectures, the "Liu2023" of the LTCHM paper's comparison.

Layout (Fig. 2-4 of the paper; widths and orders where the paper leaves them implicit are
facts of the authors' released code), with N the width of each TCM branch:

* g_a: ResBlock/2 (3 -> 2N), [2 TCM blocks (W, SW), ResBlock/2] x 2, 2 TCM blocks,
  conv/2 -> y (M = 320 channels at 1/16). TCM blocks use windows of 8 and 8/16/32 channels
  per head from the first stage to the last.
* g_s mirrors it with residual sub-pixel upsampling blocks (heads 32/16/8), ending in a
  sub-pixel convolution to RGB.
* h_a: ResBlock/2 (M -> 2N), 2 TCM blocks (window 4, 32 per head), conv/2 -> z (192).
  h_mean_s and h_scale_s: ResBlock-upsample (192 -> 2N), 2 TCM blocks, sub-pixel conv -> M.
* Channel-wise entropy model: y in 5 slices of 64; slice i's support is the hyper means
  (or scales) and the i decoded slices before it; a SWAtten module (squeezed to 128
  channels) and a 3-layer convolution (-> 224 -> 128 -> 64, GELU) give its means and
  scales; latent residual prediction adds 0.5 tanh of a like network on [SWAtten output,
  y_hat slice]. y is Gaussian given mean and scale (a K = 1 mixture here).

Coding follows LTCHM's discipline: the whole entropy-parameter path (hyper-synthesis,
SWAtten, slice transforms, LRP) runs through :class:`~ltchm.entropy.detforward.DetProgram`,
so the decoder recomputes the encoder's distributions bit for bit on any device, thread
count or batch; the symbols ``round(y - mean)`` go through :mod:`ltchm.entropy.slices`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import (
    GDN,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv3x3,
    subpel_conv3x3,
)
from compressai.ops import quantize_ste
from torch import Tensor, nn

from ltchm.entropy.detforward import DetProgram
from ltchm.entropy.detmath import IntWeights, det_conv2d, det_sigmoid
from ltchm.entropy.mixture import MixtureParams, mixture_likelihood
from ltchm.entropy.slices import SliceDecoder, SliceEncoder
from ltchm.layers.tcm import ConvTransBlock, ResidualUnit, SWAtten, SwinBlock2d
from ltchm.models.coding import ReproducibleCodingModel

__all__ = ["TCM", "tcm_program"]

STRIDE = 64  # y at 1/16, z at 1/64; window attention pads maps that are not multiples
M = 320  # channels of y
Z_CHANNELS = 192
NUM_SLICES = 5
MAX_SUPPORT = 5  # slices a slice's parameters may depend on
WINDOW = 8  # g_a, g_s and SWAtten windows; the hyper transforms use 4
HEAD_DIMS = (8, 16, 32, 32, 16, 8)  # channels per head of g_a's and g_s's stages


def _slice_net(in_ch: int, out_ch: int) -> nn.Sequential:
    """The slice transforms (means, scales, LRP): 3x3 convolutions -> 224 -> 128 -> out."""
    return nn.Sequential(
        conv3x3(in_ch, 224),
        nn.GELU(),
        conv3x3(224, 128),
        nn.GELU(),
        conv3x3(128, out_ch),
    )


def _tcm_stage(N: int, head_dim: int, window: int) -> list[nn.Module]:
    """Two TCM blocks, W-MSA then SW-MSA, on 2N channels split N / N."""
    return [ConvTransBlock(N, N, head_dim, window, shift) for shift in (0, window // 2)]


class TCM(ReproducibleCodingModel):
    """The TCM codec.

    Args:
        N: channels of each branch of the TCM blocks (the transforms run at 2N); the paper's
            models have N = 64, 96 and 128. A multiple of 32 (the hyper transforms' heads).
    """

    stride = STRIDE

    def __init__(self, N: int = 128) -> None:
        super().__init__()
        if N < 32 or N % 32:
            raise ValueError(f"N must be a positive multiple of 32, got {N}")
        self.N = N
        self.num_slices, self.max_support = NUM_SLICES, MAX_SUPPORT
        h = HEAD_DIMS
        self.g_a = nn.Sequential(
            ResidualBlockWithStride(3, 2 * N, stride=2),
            *_tcm_stage(N, h[0], WINDOW),
            ResidualBlockWithStride(2 * N, 2 * N, stride=2),
            *_tcm_stage(N, h[1], WINDOW),
            ResidualBlockWithStride(2 * N, 2 * N, stride=2),
            *_tcm_stage(N, h[2], WINDOW),
            conv3x3(2 * N, M, stride=2),
        )
        self.g_s = nn.Sequential(
            ResidualBlockUpsample(M, 2 * N, 2),
            *_tcm_stage(N, h[3], WINDOW),
            ResidualBlockUpsample(2 * N, 2 * N, 2),
            *_tcm_stage(N, h[4], WINDOW),
            ResidualBlockUpsample(2 * N, 2 * N, 2),
            *_tcm_stage(N, h[5], WINDOW),
            subpel_conv3x3(2 * N, 3, 2),
        )
        self.h_a = nn.Sequential(
            ResidualBlockWithStride(M, 2 * N, stride=2),
            *_tcm_stage(N, 32, 4),
            conv3x3(2 * N, Z_CHANNELS, stride=2),
        )

        def h_s() -> nn.Sequential:
            return nn.Sequential(
                ResidualBlockUpsample(Z_CHANNELS, 2 * N, 2),
                *_tcm_stage(N, 32, 4),
                subpel_conv3x3(2 * N, M, 2),
            )

        self.h_mean_s, self.h_scale_s = h_s(), h_s()
        width = M // NUM_SLICES

        def support(i: int) -> int:  # channels of slice i's support: hyper + earlier slices
            return M + width * min(i, MAX_SUPPORT)

        def attention(i: int) -> SWAtten:
            return SWAtten(support(i), support(i), inter_dim=128, head_dim=16, window_size=WINDOW)

        slices = range(NUM_SLICES)
        self.atten_mean = nn.ModuleList(attention(i) for i in slices)
        self.atten_scale = nn.ModuleList(attention(i) for i in slices)
        self.cc_mean_transforms = nn.ModuleList(_slice_net(support(i), width) for i in slices)
        self.cc_scale_transforms = nn.ModuleList(_slice_net(support(i), width) for i in slices)
        self.lrp_transforms = nn.ModuleList(_slice_net(support(i + 1), width) for i in slices)
        self.entropy_bottleneck = EntropyBottleneck(Z_CHANNELS)

    # -- configuration ------------------------------------------------------------------
    def entropy_path(self) -> list[nn.Module]:
        """The modules whose outputs set y's distributions: evaluated reproducibly."""
        return [
            self.h_mean_s,
            self.h_scale_s,
            self.atten_mean,
            self.atten_scale,
            self.cc_mean_transforms,
            self.cc_scale_transforms,
            self.lrp_transforms,
        ]

    # -- the channel-wise entropy model ----------------------------------------------------
    def _slices(
        self,
        run: Callable[[nn.Module, Tensor], Tensor],
        tanh: Callable[[Tensor], Tensor],
        hyper_means: Tensor,
        hyper_scales: Tensor,
        quantize: Callable[[int, Tensor, Tensor], Tensor],
    ) -> Tensor:
        """y_hat, slice by slice: ``quantize(i, means, scales)`` gives slice i's y_hat before
        latent residual prediction (and codes or accounts for it). ``run`` evaluates a
        module (float for training, the DetProgram for coding): one structure for both."""
        y_hat_slices: list[Tensor] = []
        for i in range(self.num_slices):
            support = y_hat_slices[: self.max_support]
            mean_support = run(self.atten_mean[i], torch.cat([hyper_means, *support], dim=1))
            mu = run(self.cc_mean_transforms[i], mean_support)
            scale_support = run(self.atten_scale[i], torch.cat([hyper_scales, *support], dim=1))
            scale = run(self.cc_scale_transforms[i], scale_support)
            y_hat = quantize(i, mu, scale)
            lrp = run(self.lrp_transforms[i], torch.cat([mean_support, y_hat], dim=1))
            y_hat_slices.append(y_hat + 0.5 * tanh(lrp))
        return torch.cat(y_hat_slices, dim=1)

    def forward(self, x: Tensor) -> dict[str, Any]:
        """CompressAI's forward: reconstruction and the likelihoods of y and z.

        As in the released code, the hyper-synthesis sees z rounded around the bottleneck's
        medians (straight-through) and y's slices are rounded around their means
        (straight-through) for the synthesis and the later slices, while the rate of y sees
        additive uniform noise in training.
        """
        self.check_size(x)
        y = self.g_a(x)
        z = self.h_a(y)
        _, z_likelihoods = self.entropy_bottleneck(z)
        medians = self.entropy_bottleneck._get_medians()
        z_hat = quantize_ste(z - medians) + medians
        y_slices = y.chunk(self.num_slices, dim=1)
        likelihoods: list[Tensor] = []

        def quantize(i: int, mu: Tensor, scale: Tensor) -> Tensor:
            y_i = y_slices[i]
            if self.training:
                y_rate = y_i + torch.empty_like(y_i).uniform_(-0.5, 0.5)
            else:
                y_rate = torch.round(y_i - mu) + mu
            params = MixtureParams(torch.zeros_like(mu)[:, None], mu[:, None], scale[:, None])
            likelihoods.append(mixture_likelihood(y_rate, params, "gaussian"))
            y_hat_i: Tensor = quantize_ste(y_i - mu) + mu
            return y_hat_i

        y_hat = self._slices(
            lambda m, t: m(t), torch.tanh, self.h_mean_s(z_hat), self.h_scale_s(z_hat), quantize
        )
        x_hat = self.g_s(y_hat)
        y_likelihoods = torch.cat(likelihoods, dim=1)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    # -- entropy coding (tables: ltchm.models.coding) --------------------------------------
    def entropy_program(self) -> DetProgram:
        return tcm_program().compile(*self.entropy_path())

    def _hyper(self, prog: DetProgram, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        return prog.run(self.h_mean_s, z_hat), prog.run(self.h_scale_s, z_hat)

    def _encode_y(self, prog: DetProgram, y: Tensor, means: Tensor, scales: Tensor) -> bytes:
        """One image's y string: its slices in order, each ``round(y - mean)``."""
        enc = SliceEncoder()
        y_slices = y.double().chunk(self.num_slices, dim=1)

        def code(i: int, mu: Tensor, scale: Tensor) -> Tensor:
            symbols = torch.round(y_slices[i] - mu)
            enc.add(symbols, scale)
            return symbols + mu

        self._slices(prog.run, det_tanh, means, scales, code)
        return enc.finish()

    def _decode_y(self, prog: DetProgram, string: bytes, means: Tensor, scales: Tensor) -> Tensor:
        """One image's y_hat (1, M, h, w), float64, from its y string."""
        dec = SliceDecoder(string)

        def decode(i: int, mu: Tensor, scale: Tensor) -> Tensor:
            return dec.decode(scale) + mu

        y_hat = self._slices(prog.run, det_tanh, means, scales, decode)
        dec.finish()
        return y_hat

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict[str, Any]:
        """Entropy-code a batch: ``{"strings": [y_strings, z_strings], "shape": z size}``."""
        self.check_size(x)
        prog = self._require_ready()
        y = self.g_a(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        means, scales = self._hyper(prog, z_hat)
        y_strings = [
            self._encode_y(prog, y[b : b + 1], means[b : b + 1], scales[b : b + 1])
            for b in range(len(x))
        ]
        return {"strings": [y_strings, z_strings], "shape": tuple(z.shape[-2:])}

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int]) -> dict[str, Tensor]:
        """Decode what :meth:`compress` wrote: ``{"x_hat": (B, 3, 64 h, 64 w) in [0, 1],
        "y_hat": the decoded latent (float64)}``."""
        prog = self._require_ready()
        y_strings, z_strings = strings
        if len(y_strings) != len(z_strings):
            raise ValueError("y and z strings differ in number")
        z_hat = self.entropy_bottleneck.decompress(z_strings, tuple(shape))
        means, scales = self._hyper(prog, z_hat)
        y_hat = torch.cat(
            [
                self._decode_y(prog, string, means[b : b + 1], scales[b : b + 1])
                for b, string in enumerate(y_strings)
            ]
        )
        x_hat = self.g_s(y_hat.to(z_hat.dtype)).clamp_(0, 1)
        return {"x_hat": x_hat, "y_hat": y_hat}


# -- reproducible forms of TCM's modules ----------------------------------------------------
def det_tanh(x: Tensor) -> Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1 from IEEE-exact operations."""
    return 2.0 * det_sigmoid(2.0 * x.double()) - 1.0


def tcm_program() -> DetProgram:
    """A :class:`DetProgram` that also evaluates TCM's module types."""
    prog = DetProgram()
    run = prog.run
    gdn_params: weakref.WeakKeyDictionary[GDN, tuple[IntWeights, Tensor]] = (
        weakref.WeakKeyDictionary()
    )

    def gdn(m: GDN, x: Tensor) -> Tensor:
        # norm = beta + gamma x^2 at each position (a 1x1 convolution); x * sqrt or / sqrt.
        # The reparametrisation (max, square, subtract: correctly rounded on every device)
        # is applied once per program, like the weights' rounding.
        if m not in gdn_params:
            C = m.gamma.shape[0]
            gamma = m.gamma_reparam(m.gamma.detach()).reshape(C, C, 1, 1)
            gdn_params[m] = IntWeights(gamma, out_dim=0), m.beta_reparam(m.beta.detach())
        weights, beta = gdn_params[m]
        x = x.double()
        norm = det_conv2d(x * x, weights, beta.to(x.device), scale="position")
        return x * torch.sqrt(norm) if m.inverse else x / torch.sqrt(norm)

    def residual_block(m: ResidualBlock, x: Tensor) -> Tensor:
        out = run(m.leaky_relu, run(m.conv2, run(m.leaky_relu, run(m.conv1, x))))
        return out + (run(m.skip, x) if m.skip is not None else x.double())

    def residual_upsample(m: ResidualBlockUpsample, x: Tensor) -> Tensor:
        out = run(m.igdn, run(m.conv, run(m.leaky_relu, run(m.subpel_conv, x))))
        return out + run(m.upsample, x)

    def conv_trans(m: ConvTransBlock, x: Tensor) -> Tensor:
        x = x.double()
        c, t = torch.split(run(m.split, x), [m.conv_dim, m.trans_dim], dim=1)
        c = run(m.conv_block, c) + c
        return x + run(m.merge, torch.cat([c, run(m.trans_block, t)], dim=1))

    def swin(m: SwinBlock2d, x: Tensor) -> Tensor:
        x = x.double()
        x = x + run(m.attn, run(m.norm1, x))
        return x + run(m.mlp, run(m.norm2, x))

    def unit(m: ResidualUnit, x: Tensor) -> Tensor:
        return (run(m.conv, x) + x.double()).clamp_min(0.0)

    def swatten(m: SWAtten, x: Tensor) -> Tensor:
        x = run(m.in_conv, x)
        gate = det_sigmoid(run(m.conv_b, run(m.non_local, x)))
        return run(m.out_conv, run(m.conv_a, x) * gate + x)

    handlers: dict[type, Callable[[Any, Tensor], Tensor]] = {
        GDN: gdn,
        nn.PixelShuffle: lambda m, x: F.pixel_shuffle(x.double(), m.upscale_factor),
        ResidualBlock: residual_block,
        ResidualBlockUpsample: residual_upsample,
        ConvTransBlock: conv_trans,
        SwinBlock2d: swin,
        ResidualUnit: unit,
        SWAtten: swatten,
    }
    for cls, handler in handlers.items():
        prog.register(cls, handler)
    return prog
