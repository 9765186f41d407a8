"""Input-dependent depth-wise convolution (IDConv), Sec. 2.2 / Fig. 2(a) of the paper.

IDConv is TransXNet's dynamic convolution (Lou et al. 2023): the input is pooled to K x K,
projected to G x C x K x K attention logits, softmaxed over the G groups and used to mix G
learnable depth-wise kernels into one kernel per sample and channel. The same projection of
the global mean mixes G learnable biases into a per-sample bias.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["IDConv"]


class _Folded(NamedTuple):
    reduce_w: Tensor  # (C/r, C), BatchNorm folded in
    reduce_b: Tensor
    diff_w: Tensor  # (C, C/r): group 0's expansion minus group 1's
    diff_b: Tensor
    kernel_1: Tensor  # (C, K*K): group 1's kernel
    kernel_d: Tensor  # group 0's minus group 1's
    bias_1: Tensor  # (C,)
    bias_d: Tensor


class IDConv(nn.Module):
    """Input-dependent depth-wise convolution.

    Args:
        dim: channels C (input = output).
        kernel_size: K of the depth-wise kernel (the paper uses 1 and 3).
        groups: G, the number of kernels mixed per channel (2 in the paper).
        reduction: the projection's bottleneck is C / reduction (4 in the authors' code).
        bias: mix G learnable biases with the projection of the global mean.

    Inference (eval, no grad, two groups) folds BatchNorm and the softmax into a cheaper
    projection; ``fold_inference = False`` keeps the modules of the definition, whose calls
    complexity counters (thop) count.
    """

    fold_inference: bool = True

    def __init__(
        self, dim: int, kernel_size: int, groups: int = 2, reduction: int = 4, bias: bool = True
    ) -> None:
        super().__init__()
        if groups < 2:
            raise ValueError(f"IDConv needs groups >= 2 (softmax over groups), got {groups}")
        self.dim, self.kernel_size, self.groups = dim, kernel_size, groups
        hidden = max(dim // reduction, 1)
        self.pool = nn.AdaptiveAvgPool2d(kernel_size)
        self.reduce = nn.Conv2d(dim, hidden, 1, bias=False)
        self.norm = nn.BatchNorm2d(hidden)
        self.act = nn.GELU()
        self.expand = nn.Conv2d(hidden, groups * dim, 1)
        self.weight = nn.Parameter(torch.empty(groups, dim, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(groups, dim)) if bias else None
        self.reset_parameters()
        self._fold: tuple[tuple[tuple[int, int], ...], _Folded] | None = None

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.weight, std=0.02)
        if self.bias is not None:
            nn.init.trunc_normal_(self.bias, std=0.02)

    def _normalize(self, h: Tensor) -> Tensor:
        # BatchNorm in training mode needs more than one value per channel; a batch of one
        # pooled 1x1 map has exactly one. Normalise such a batch with the running statistics
        # (as in eval) instead of crashing, so the model trains at batch size 1.
        if self.training and h.shape[0] * h.shape[2] * h.shape[3] == 1:
            n = self.norm
            return F.batch_norm(
                h, n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps
            )
        normed: Tensor = self.norm(h)
        return normed

    def _project(self, pooled: Tensor) -> Tensor:
        out: Tensor = self.expand(self.act(self._normalize(self.reduce(pooled))))
        return out

    def _folded(self) -> _Folded:
        """The inference projection of two groups, rebuilt when a parameter changes."""
        sources = (*self.parameters(), *self.buffers())
        key = tuple((t.data_ptr(), t._version) for t in sources)
        if self._fold is not None and self._fold[0] == key:
            return self._fold[1]
        C, K = self.dim, self.kernel_size
        n = self.norm
        assert n.running_mean is not None and n.running_var is not None  # tracked stats
        scale = n.weight / torch.sqrt(n.running_var + n.eps)
        e_w = self.expand.weight.reshape(2, C, -1)
        assert self.expand.bias is not None  # built with a bias
        e_b = self.expand.bias.reshape(2, C)
        w = self.weight.reshape(2, C, K * K)
        b = self.bias if self.bias is not None else torch.zeros_like(self.weight[:, :, 0, 0])
        folded = _Folded(
            reduce_w=(self.reduce.weight.flatten(1) * scale[:, None]).contiguous(),
            reduce_b=(n.bias - n.running_mean * scale).contiguous(),
            diff_w=(e_w[0] - e_w[1]).contiguous(),
            diff_b=(e_b[0] - e_b[1]).contiguous(),
            kernel_1=w[1].contiguous(),
            kernel_d=(w[0] - w[1]).contiguous(),
            bias_1=b[1].contiguous(),
            bias_d=(b[0] - b[1]).contiguous(),
        )
        self._fold = (key, folded)
        return folded

    def _infer(self, x: Tensor) -> Tensor:
        # Inference with two groups, as the paper has: BatchNorm folded into the reduction,
        # the softmax over two groups as the sigmoid of the logits' difference (one
        # projection to C instead of 2C), and matrix products on the pooled vectors instead
        # of 1x1 convolutions of 1x1 maps. DAM's IDConvs are per-op overhead on small maps
        # (benchmarks/RESULTS.md, "Forward pass"); the output matches the module path to
        # float rounding.
        B, C = x.shape[:2]
        K = self.kernel_size
        f = self._folded()
        mean = x.mean(dim=(2, 3))
        if K == 1:
            gate = F.linear(F.gelu(F.linear(mean, f.reduce_w, f.reduce_b)), f.diff_w, f.diff_b)
            gate = gate.sigmoid_()
            scale = torch.addcmul(f.kernel_1.view(1, C), f.kernel_d.view(1, C), gate)
            scale = scale.reshape(B, C, 1, 1)
            if self.bias is None:
                return x * scale
            shift = torch.addcmul(f.bias_1, f.bias_d, gate).reshape(B, C, 1, 1)
            return torch.addcmul(shift, x, scale)
        # the K x K pooled vectors and the mean in one projection: rows 0..K*K-1 and K*K
        pooled = F.adaptive_avg_pool2d(x, K).reshape(B, C, K * K).transpose(1, 2)
        rows = torch.cat([pooled, mean.unsqueeze(1)], dim=1)
        gates = F.linear(F.gelu(F.linear(rows, f.reduce_w, f.reduce_b)), f.diff_w, f.diff_b)
        gates = gates.sigmoid_()
        kernel = torch.addcmul(f.kernel_1, f.kernel_d, gates[:, : K * K].transpose(1, 2))
        bias = torch.addcmul(f.bias_1, f.bias_d, gates[:, K * K]) if self.bias is not None else None
        return self._depthwise(x, kernel.reshape(B, C, K, K), bias)

    def forward(self, x: Tensor) -> Tensor:
        if (
            self.fold_inference
            and self.groups == 2
            and not self.training
            and not torch.is_grad_enabled()
        ):
            return self._infer(x)
        B, C = x.shape[:2]
        G, K = self.groups, self.kernel_size
        pooled = self.pool(x)
        # For K = 1 the pooled map is the global mean: one projection serves kernel and bias.
        mean = pooled if K == 1 else x.mean(dim=(2, 3), keepdim=True)
        logits = self._project(pooled)
        kernel = (logits.reshape(B, G, C, K, K).softmax(dim=1) * self.weight).sum(dim=1)
        bias = None
        if self.bias is not None:
            blogits = logits if K == 1 else self._project(mean)
            bias = (blogits.reshape(B, G, C).softmax(dim=1) * self.bias).sum(dim=1)
        if K == 1:
            # A 1x1 depth-wise kernel is a per-sample, per-channel scale: one fused pass.
            scale = kernel.reshape(B, C, 1, 1)
            if bias is None:
                return x * scale
            return torch.addcmul(bias.reshape(B, C, 1, 1), x, scale)
        return self._depthwise(x, kernel, bias)

    def _depthwise(self, x: Tensor, kernel: Tensor, bias: Tensor | None) -> Tensor:
        """Each sample's ``kernel`` (B, C, K, K) and ``bias`` (B, C) over its channels."""
        B, C, H, W = x.shape
        K = self.kernel_size
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            # Folding the batch into channels would copy a channels-last map to NCHW; one
            # convolution per sample keeps it channels-last, the format DAM infers in.
            cl = torch.channels_last
            outs = [
                F.conv2d(
                    x[b : b + 1],
                    kernel[b].unsqueeze(1).contiguous(memory_format=cl),
                    bias=None if bias is None else bias[b],
                    padding=K // 2,
                    groups=C,
                )
                for b in range(B)
            ]
            return outs[0] if B == 1 else torch.cat(outs)
        # All samples at once: fold the batch into the channel groups of one convolution.
        out = F.conv2d(
            x.reshape(1, B * C, H, W),
            kernel.reshape(B * C, 1, K, K),
            bias=None if bias is None else bias.reshape(B * C),
            padding=K // 2,
            groups=B * C,
        )
        return out.reshape(B, C, H, W)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kernel_size={self.kernel_size}, groups={self.groups}"
