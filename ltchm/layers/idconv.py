"""Input-dependent depth-wise convolution (IDConv), Sec. 2.2 / Fig. 2(a) of the paper.

IDConv is TransXNet's dynamic convolution (Lou et al. 2023): the input is pooled to K x K,
projected to G x C x K x K attention logits, softmaxed over the G groups and used to mix G
learnable depth-wise kernels into one kernel per sample and channel. The same projection of
the global mean mixes G learnable biases into a per-sample bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["IDConv"]


class IDConv(nn.Module):
    """Input-dependent depth-wise convolution.

    Args:
        dim: channels C (input = output).
        kernel_size: K of the depth-wise kernel (the paper uses 1 and 3).
        groups: G, the number of kernels mixed per channel (2 in the paper).
        reduction: the projection's bottleneck is C / reduction (4 in the authors' code).
        bias: mix G learnable biases with the projection of the global mean.
    """

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

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
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
