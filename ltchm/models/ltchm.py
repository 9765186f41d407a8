"""LTCHM (Zhang et al., Radioengineering 2024) and its Table 4 ablations.

Two placements of the attention modules (``dam_layout``), with N the channels of y and z:

``authors`` (default): the released code (github.com/jiahuiLiu11/LTCHM) that produced the
paper's Tables 3-6. Its parameter counts are the paper's: four DAMs are Table 4's +0.98M, and
thop's rule gives Table 4/6's 12.34M at N=128 (``ltchm complexity`` shows both).

* g_a: ResBlock/stride (1/2), ResBlock, ResBlock/stride (1/4), DAM, ResBlock, ResBlock/stride
  (1/8), ResBlock, conv/stride 2 (1/16), DAM -> y.
* g_s: DAM, ResBlock, upsample block (1/8), ResBlock, upsample block (1/4), DAM, ResBlock,
  upsample block (1/2), ResBlock, transposed conv -> x_hat.
* h_a: conv, conv, conv/2 (N -> 2N), HPHAM(2N), conv (2N -> N), conv/2 -> z.
* h_s: conv, deconv/2 (N -> 2N), HPHAM(2N), conv (2N -> 1.5N), deconv/2, conv (1.5N -> 2N).

``table1``: Tables 1-2 as printed (and this project's models before the choice existed).

* g_a: [ResBlock/stride -> (DAM, ResBlock)] x 3 at 1/2, 1/4, 1/8, then conv/stride 2 -> DAM.
* g_s: (DAM, ResBlock) at 1/16, then [upsample block -> (DAM, ResBlock)] x 2, upsample
  block, ResBlock, transposed conv -> x_hat.
* h_a: HPHAM(N), conv, conv, conv/2 (N -> 2N), HPHAM(2N), conv (2N -> N), conv/2 -> z.
* h_s: deconv/2, conv (N -> 2N), HPHAM(2N), conv (2N -> 1.5N), deconv/2, conv (1.5N -> 2N),
  HPHAM(2N) -> hyper features (2N).

Both: entropy parameters are 1x1 convs 4N -> 640 -> 640 -> 3KN from [context (2N), hyper
(2N)]. The layouts share every module's definition; what the released code does differently
inside its HPHAM blocks (an extra 1x1 convolution around each stage, LeakyReLU instead of
GELU and an inner residual in the FFN) is not reproduced: DAM, HPHAM, GCA and MSB-FFN follow
the paper's Sec. 2.

Where the paper's tables and the authors' code disagree we follow the code: y and z have N
channels (Tables 1-2 print 2C for the latent and the hyper-encoder input, which contradicts
the 4N -> 9N entropy-parameter network), so the encoder's last stage and the decoder's first
stage run at N (and table1's first HPHAM of h_a sees y's N channels). Stride-2 layers of the
decoders ("Conv K3 S2" / "Conv K1 S2" in the tables) are transposed convolutions, as in the
released code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN, ResidualBlock, ResidualBlockWithStride, conv3x3
from compressai.ops import quantize_ste
from torch import Tensor, nn

from ltchm.entropy.context import ContextMode, ContextModel
from ltchm.entropy.detforward import DetProgram
from ltchm.entropy.latent import decode_y, encode_y
from ltchm.entropy.mixture import Family, MixtureParams, mixture_likelihood, split_params
from ltchm.layers import DAM, HPHAM
from ltchm.models.coding import ReproducibleCodingModel

__all__ = ["DAM_LAYOUTS", "LTCHM", "DamLayout", "UpsampleBlock", "Variant"]

STRIDE = 64  # y at 1/16, z at 1/64

DamLayout = Literal["authors", "table1"]
DAM_LAYOUTS: tuple[DamLayout, ...] = ("authors", "table1")
_Factory = Callable[[int], nn.Module]
_MixerFactory = Callable[[int, bool], nn.Module]


@dataclass(frozen=True)
class Variant:
    """Which of the paper's modules are present (Table 4 ablations)."""

    dam: bool = True
    hpham: bool = True
    gca: bool = True


def deconv(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that multiplies the spatial size by ``stride`` exactly."""
    return nn.ConvTranspose2d(
        in_ch,
        out_ch,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        output_padding=stride - 1,
    )


class UpsampleBlock(nn.Module):
    """Table 1 decoder block: deconv K3 S2 -> LeakyReLU -> conv K3 -> IGDN, + deconv K1 S2."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = deconv(in_ch, out_ch, 3)
        self.act = nn.LeakyReLU(inplace=True)
        self.conv = conv3x3(out_ch, out_ch)
        self.igdn = GDN(out_ch, inverse=True)
        self.skip = deconv(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        # The 1x1 stride-2 transposed skip is W x at even positions and its bias everywhere;
        # adding that in place is cheaper than materialising its zero-stuffed output
        # (benchmarks/RESULTS.md, "Forward pass").
        out: Tensor = self.igdn(self.conv(self.act(self.up(x))))
        out[..., ::2, ::2] += F.conv2d(x, self.skip.weight.transpose(0, 1))
        assert self.skip.bias is not None  # built with a bias
        return out.add_(self.skip.bias.reshape(1, -1, 1, 1))


class LTCHM(ReproducibleCodingModel):
    """The LTCHM codec with a K-component mixture entropy model and a hyperprior.

    Args:
        N: channels of y and z (and of the main transforms).
        mixture: ``"gaussian"`` (the paper) or ``"laplace"`` (the authors' code).
        K: mixture components.
        context: ``"autoregressive"`` (5x5 masked convolution) or ``"checkerboard"``.
        window_size, head_dim: HPHAM's window attention.
        variant: which modules are present (ablations).
        dam_layout: ``"authors"`` (the released code behind the paper's Tables 3-6: four
            DAMs, two HPHAMs) or ``"table1"`` (Tables 1-2 as printed: seven DAMs, four
            HPHAMs; checkpoints written before the choice existed hold this layout).
    """

    stride = STRIDE
    # What `train.compile` compiles (ltchm.runtime.compile_for_training): DAM's IDConvs are
    # ~20 small operations each, per-op overhead in eager mode. Compiling the whole model
    # instead saved 2 % more of a CPU step for twice the compilation (RESULTS.md, "Training
    # engine").
    compile_units: ClassVar[tuple[type[nn.Module], ...]] = (DAM,)

    def __init__(
        self,
        N: int = 192,
        mixture: Family = "gaussian",
        K: int = 3,
        context: ContextMode = "autoregressive",
        window_size: int = 4,
        head_dim: int = 32,
        variant: Variant = Variant(),
        dam_layout: DamLayout = "authors",
    ) -> None:
        super().__init__()
        if N % 2:
            raise ValueError(f"N must be even (HPHAM halves and 1.5N widths), got {N}")
        if mixture not in ("gaussian", "laplace"):
            raise ValueError(f"unknown mixture {mixture!r}: gaussian or laplace")
        self.N, self.K, self.mixture, self.variant = N, K, mixture, variant
        M = N * 3 // 2

        def dam(dim: int) -> nn.Module:
            return DAM(dim) if variant.dam else nn.Identity()

        def mixer(dim: int, edge: bool = False) -> nn.Module:
            # HPHAM, or in the ablations without it what Cheng's hyper transforms have there.
            if variant.hpham:
                return HPHAM(dim, window_size, head_dim, use_gca=variant.gca)
            return nn.Identity() if edge else nn.LeakyReLU(inplace=True)

        if dam_layout == "authors":
            self._build_authors(N, M, dam, mixer)
        elif dam_layout == "table1":
            self._build_table1(N, M, dam, mixer)
        else:
            raise ValueError(f"unknown dam_layout {dam_layout!r}: authors or table1")
        self.dam_layout: DamLayout = dam_layout
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.context_model = ContextModel(N, context)
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(4 * N, 640, 1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(640, 640, 1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(640, 3 * K * N, 1),
        )

    # -- layouts ---------------------------------------------------------------------------
    def _build_table1(self, N: int, M: int, dam: _Factory, mixer: _MixerFactory) -> None:
        """Table 1 / Table 2 as printed: seven DAMs, four HPHAMs."""
        self.g_a = nn.Sequential(
            ResidualBlockWithStride(3, N, stride=2),
            dam(N),
            ResidualBlock(N, N),
            ResidualBlockWithStride(N, N, stride=2),
            dam(N),
            ResidualBlock(N, N),
            ResidualBlockWithStride(N, N, stride=2),
            dam(N),
            ResidualBlock(N, N),
            conv3x3(N, N, stride=2),
            dam(N),
        )
        self.g_s = nn.Sequential(
            dam(N),
            ResidualBlock(N, N),
            UpsampleBlock(N, N),
            dam(N),
            ResidualBlock(N, N),
            UpsampleBlock(N, N),
            dam(N),
            ResidualBlock(N, N),
            UpsampleBlock(N, N),
            ResidualBlock(N, N),
            deconv(N, 3, 3),
        )
        self.h_a = nn.Sequential(
            mixer(N, True),
            conv3x3(N, N),
            nn.LeakyReLU(inplace=True),
            conv3x3(N, N),
            nn.LeakyReLU(inplace=True),
            conv3x3(N, 2 * N, stride=2),
            mixer(2 * N, False),
            conv3x3(2 * N, N),
            nn.LeakyReLU(inplace=True),
            conv3x3(N, N, stride=2),
        )
        self.h_s = nn.Sequential(
            deconv(N, N, 3),
            nn.LeakyReLU(inplace=True),
            conv3x3(N, 2 * N),
            mixer(2 * N, False),
            conv3x3(2 * N, M),
            nn.LeakyReLU(inplace=True),
            deconv(M, M, 3),
            nn.LeakyReLU(inplace=True),
            conv3x3(M, 2 * N),
            mixer(2 * N, True),
        )

    def _build_authors(self, N: int, M: int, dam: _Factory, mixer: _MixerFactory) -> None:
        """The released code's placement: DAMs at 1/4 and 1/16 of g_a and g_s, one HPHAM
        (at 2N, after an activation) in each hyper transform, h_s up-sampling after its first
        convolution. Without HPHAM (ablations) nothing stands in its place."""
        self.g_a = nn.Sequential(
            ResidualBlockWithStride(3, N, stride=2),
            ResidualBlock(N, N),
            ResidualBlockWithStride(N, N, stride=2),
            dam(N),
            ResidualBlock(N, N),
            ResidualBlockWithStride(N, N, stride=2),
            ResidualBlock(N, N),
            conv3x3(N, N, stride=2),
            dam(N),
        )
        self.g_s = nn.Sequential(
            dam(N),
            ResidualBlock(N, N),
            UpsampleBlock(N, N),
            ResidualBlock(N, N),
            UpsampleBlock(N, N),
            dam(N),
            ResidualBlock(N, N),
            UpsampleBlock(N, N),
            ResidualBlock(N, N),
            deconv(N, 3, 3),
        )
        self.h_a = nn.Sequential(
            conv3x3(N, N),
            nn.LeakyReLU(inplace=True),
            conv3x3(N, N),
            nn.LeakyReLU(inplace=True),
            conv3x3(N, 2 * N, stride=2),
            nn.LeakyReLU(inplace=True),
            mixer(2 * N, True),
            conv3x3(2 * N, N),
            nn.LeakyReLU(inplace=True),
            conv3x3(N, N, stride=2),
        )
        self.h_s = nn.Sequential(
            conv3x3(N, N),
            nn.LeakyReLU(inplace=True),
            deconv(N, 2 * N, 3),
            nn.LeakyReLU(inplace=True),
            mixer(2 * N, True),
            conv3x3(2 * N, M),
            nn.LeakyReLU(inplace=True),
            deconv(M, M, 3),
            nn.LeakyReLU(inplace=True),
            conv3x3(M, 2 * N),
        )

    # -- configuration ------------------------------------------------------------------
    @property
    def context(self) -> ContextMode:
        return self.context_model.mode

    # -- entropy model ---------------------------------------------------------------------
    def mixture_params(self, ctx: Tensor, hyper: Tensor) -> MixtureParams:
        return split_params(self.entropy_parameters(torch.cat([ctx, hyper], dim=1)), self.K)

    def forward(self, x: Tensor) -> dict[str, Any]:
        """CompressAI's forward: reconstruction and the likelihoods of y and z.

        Training: z and the rate of y see additive uniform noise; the synthesis transform and
        the context model see y rounded with a straight-through gradient (what they will see
        when decoding). Eval: everything is rounded.
        """
        self.check_size(x)
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        hyper = self.h_s(z_hat)
        if self.training:
            y_hat = quantize_ste(y)
            y_rate = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_hat = y_rate = torch.round(y)
        params = self.mixture_params(self.context_model(y_hat), hyper)
        y_likelihoods = mixture_likelihood(y_rate, params, self.mixture)
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    # -- entropy coding --------------------------------------------------------------------
    def entropy_program(self) -> DetProgram:
        return DetProgram().compile(self.h_s, self.context_model, self.entropy_parameters)

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict[str, Any]:
        """Entropy-code a batch: ``{"strings": [y_strings, z_strings], "shape": z size,
        "y_hat": the quantised latents}``."""
        self.check_size(x)
        prog = self._require_ready()
        y = self.g_a(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        hyper = prog.run(self.h_s, z_hat)
        y_hat = torch.round(y).double()
        y_strings = [
            encode_y(self, prog, y_hat[i : i + 1], hyper[i : i + 1]) for i in range(len(x))
        ]
        # y_hat is what the decoder rebuilds exactly: the scene codec's error-bounded layer
        # predicts from it without decoding its own streams again
        return {"strings": [y_strings, z_strings], "shape": tuple(z.shape[-2:]), "y_hat": y_hat}

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int]) -> dict[str, Tensor]:
        """Decode what :meth:`compress` wrote: ``{"x_hat": (B, 3, 64 h, 64 w) in [0, 1]}``."""
        prog = self._require_ready()
        y_strings, z_strings = strings
        if len(y_strings) != len(z_strings):
            raise ValueError("y and z strings differ in number")
        z_hat = self.entropy_bottleneck.decompress(z_strings, tuple(shape))
        hyper = prog.run(self.h_s, z_hat)
        y_hat = torch.cat(
            [decode_y(self, prog, s, hyper[i : i + 1]) for i, s in enumerate(y_strings)]
        )
        x_hat = self.g_s(y_hat.to(z_hat.dtype)).clamp_(0, 1)
        return {"x_hat": x_hat, "y_hat": y_hat}
