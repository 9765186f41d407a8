"""The entropy-parameter path (hyper-synthesis, context model, entropy parameters) evaluated
with the reproducible arithmetic of :mod:`ltchm.entropy.detmath`.

:class:`DetProgram` mirrors the float ``forward`` of each module type that can appear in
that path; the float forward stays the one used for training. Tests compare the two on
every module type so they cannot drift apart.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, cast

import torch
from compressai.layers import MaskedConv2d
from torch import Tensor, nn

from ltchm.entropy.context import ContextModel, anchor_mask
from ltchm.entropy.detmath import (
    IntWeights,
    det_conv2d,
    det_conv_transpose2d,
    det_gelu,
    det_layer_norm,
    det_linear,
    det_matmul,
    det_mean,
    det_sigmoid,
    det_softmax,
)
from ltchm.layers import GCA, HPHAM, MSBFFN, HybridAttentionStage, LayerNorm2d, WindowAttention

__all__ = ["DetProgram"]


class DetProgram:
    """Integer weights of a model's entropy-parameter path and an interpreter over them.

    Built from the float weights once (``LTCHM.update``); ``run(module, x)`` evaluates any
    module of the path on ``x`` reproducibly, returning float64.
    """

    def __init__(self) -> None:
        # keyed by the module itself (weakly): ids can be reused by new objects
        self._weights: weakref.WeakKeyDictionary[nn.Module, IntWeights] = (
            weakref.WeakKeyDictionary()
        )
        self._handlers: dict[type, Callable[[Any, Tensor], Tensor]] = {
            nn.Sequential: self._sequential,
            nn.Identity: lambda m, x: x.double(),
            nn.ReLU: lambda m, x: x.double().clamp_min(0.0),
            nn.LeakyReLU: self._leaky_relu,
            nn.GELU: self._gelu,
            nn.Conv2d: self._conv,
            nn.ConvTranspose2d: self._deconv,
            LayerNorm2d: self._layer_norm2d,
            HPHAM: lambda m, x: self.run(m.stages, x),
            HybridAttentionStage: self._stage,
            WindowAttention: self._window_attention,
            GCA: self._gca,
            MSBFFN: self._msbffn,
            ContextModel: self._context,
        }

    def register(self, cls: type, handler: Callable[[Any, Tensor], Tensor]) -> None:
        """Evaluate modules of type ``cls`` with ``handler(module, x)``: how a model of the
        zoo brings the reproducible forms of its own entropy-path modules."""
        self._handlers[cls] = handler

    # -- weights ---------------------------------------------------------------------------
    def weights(self, module: nn.Module) -> IntWeights:
        key = module
        if key not in self._weights:
            weight = cast(Tensor, module.weight)
            if isinstance(module, nn.ConvTranspose2d):
                w = IntWeights(weight, out_dim=1)
            elif isinstance(module, MaskedConv2d):
                w = IntWeights(weight * cast(Tensor, module.mask), out_dim=0)
            else:
                w = IntWeights(weight, out_dim=0)
            self._weights[key] = w
        return self._weights[key]

    def compile(self, *modules: nn.Module) -> DetProgram:
        """Build the integer weights of every layer below ``modules`` now."""
        for root in modules:
            for m in root.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                    self.weights(m)
        return self

    # -- dispatch --------------------------------------------------------------------------
    def run(self, module: nn.Module, x: Tensor) -> Tensor:
        for cls in type(module).__mro__:
            handler = self._handlers.get(cls)
            if handler is not None:
                return handler(module, x)
        raise TypeError(f"no reproducible evaluation for {type(module).__name__}")

    def _sequential(self, m: nn.Sequential, x: Tensor) -> Tensor:
        for layer in m:
            x = self.run(layer, x)
        return x

    # -- layers ----------------------------------------------------------------------------
    @staticmethod
    def _leaky_relu(m: nn.LeakyReLU, x: Tensor) -> Tensor:
        x = x.double()
        return torch.where(x >= 0, x, x * m.negative_slope)

    @staticmethod
    def _gelu(m: nn.GELU, x: Tensor) -> Tensor:
        if m.approximate != "none":
            raise TypeError("only the exact (erf) GELU has a reproducible evaluation")
        return det_gelu(x)

    def _conv(self, m: nn.Conv2d, x: Tensor) -> Tensor:
        if m.padding_mode != "zeros" or m.dilation != (1, 1) or isinstance(m.padding, str):
            raise TypeError("reproducible convolutions support zero padding, no dilation")
        # 1x1 layers scale each position on its own, so a position's output never depends
        # on its neighbours (the autoregressive decoder evaluates positions one at a time).
        pointwise = m.kernel_size == (1, 1) and m.stride == (1, 1)
        scale = 0 if isinstance(m, MaskedConv2d) else ("position" if pointwise else "sample")
        return det_conv2d(x, self.weights(m), m.bias, m.stride, m.padding, m.groups, scale)

    def masked_conv_valid(self, m: MaskedConv2d, y_hat: Tensor) -> Tensor:
        """The context convolution on integer ``y_hat`` without padding (the caller supplies
        the neighbourhood): what the encoder's padded convolution gives at the centre."""
        return det_conv2d(y_hat, self.weights(m), m.bias, m.stride, 0, m.groups, 0)

    def _deconv(self, m: nn.ConvTranspose2d, x: Tensor) -> Tensor:
        if m.groups != 1 or m.dilation != (1, 1) or isinstance(m.padding, str):
            raise TypeError("reproducible transposed convolutions support groups=1 only")
        return det_conv_transpose2d(
            x, self.weights(m), m.bias, m.stride, m.padding, m.output_padding
        )

    def _layer_norm2d(self, m: LayerNorm2d, x: Tensor) -> Tensor:
        n = m.norm
        return det_layer_norm(x, n.weight, n.bias, n.eps, dim=1)

    def _stage(self, m: HybridAttentionStage, x: Tensor) -> Tensor:
        x = x.double()
        x_cha, x_trans = self.run(m.conv_in, self.run(m.norm1, x)).chunk(2, dim=1)
        fused = torch.cat([self.run(m.gca, x_cha), self.run(m.attn, x_trans)], dim=1)
        mid = self.run(m.conv_out, fused) + x
        return self.run(m.ffn, self.run(m.norm2, mid)) + mid

    def _window_attention(self, m: WindowAttention, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        mask, shift = m.masks(H, W, x.device)
        windows = m.to_windows(x.double(), shift)  # pure data movement: exact
        BW, N, _ = windows.shape
        nW = mask.shape[0]
        d = C // m.heads
        qkv = det_linear(windows, self.weights(m.qkv), m.qkv.bias).reshape(BW, N, 3, m.heads, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        logits = det_matmul(q * m.scale, k.transpose(-2, -1))
        logits = logits + m.relative_position_bias().detach().double()
        logits = logits.reshape(B, nW, m.heads, N, N) + mask[None, :, None].double()
        attn = det_softmax(logits, dim=-1).reshape(BW, m.heads, N, N)
        out = det_matmul(attn, v).transpose(1, 2).reshape(BW, N, C)
        out = det_linear(out, self.weights(m.proj), m.proj.bias)
        return m.from_windows(out, B, H, W, shift)

    def _gca(self, m: GCA, x: Tensor) -> Tensor:
        x = x.double()
        s = det_mean(x, dim=(2, 3), keepdim=True)
        branches = torch.cat([self.run(b, s) for b in m.branches], dim=1)
        return x * det_sigmoid(self.run(m.fuse, branches))

    def _msbffn(self, m: MSBFFN, x: Tensor) -> Tensor:
        parts = self.run(m.fc1, x).chunk(len(m.branches), dim=1)
        outs: list[Tensor] = []
        for part, conv in zip(parts, m.branches, strict=True):
            outs.append(self.run(conv, part if not outs else part + outs[-1]))
        return self.run(m.fc2, det_gelu(torch.cat(outs, dim=1)))

    def _context(self, m: ContextModel, x: Tensor) -> Tensor:
        ctx = self.run(m.conv, x)
        if m.mode == "checkerboard":
            H, W = x.shape[-2:]
            ctx = ctx.masked_fill(anchor_mask(H, W, x.device), 0.0)
        return ctx
