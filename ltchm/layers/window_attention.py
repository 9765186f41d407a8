"""Window multi-head self-attention (W-MSA) and its shifted variant (SW-MSA), Swin-style.

Maps of any size are accepted: they are padded to a multiple of the window and the padded
positions are masked out as keys, so results on the real positions do not depend on the
padding. As in Swin, the shift is dropped when the (padded) map fits in one window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["WindowAttention", "window_masks"]

# Swin's masking constant: finite so a fully masked row stays well defined.
MASK_VALUE = -100.0


def _relative_position_index(ws: int) -> Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij"))
    coords = coords.flatten(1)  # 2, ws*ws
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]  # ws*ws, ws*ws


def _partition(t: Tensor, ws: int) -> Tensor:
    # (..., Hp, Wp) -> (..., nW, ws*ws) for a trailing 2-D map
    *lead, Hp, Wp = t.shape
    t = t.reshape(*lead, Hp // ws, ws, Wp // ws, ws).transpose(-3, -2)
    return t.reshape(*lead, (Hp // ws) * (Wp // ws), ws * ws)


def window_masks(
    H: int, W: int, ws: int, shift: int, device: torch.device | None = None
) -> tuple[Tensor, int]:
    """Additive attention masks (nW, ws*ws, ws*ws) for an H x W map, and the shift used.

    A key is masked when it is padding, or (shifted windows) when it comes from another
    region of the rolled map than the query.
    """
    Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
    if Hp <= ws and Wp <= ws:
        shift = 0
    valid = torch.zeros(Hp, Wp, dtype=torch.bool, device=device)
    valid[:H, :W] = True
    region = torch.zeros(Hp, Wp, dtype=torch.long, device=device)
    if shift:
        valid = valid.roll((-shift, -shift), (0, 1))
        cnt = 0
        for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
                region[hs, wsl] = cnt
                cnt += 1
    valid_w = _partition(valid, ws)  # nW, N
    region_w = _partition(region, ws)
    masked = (region_w[:, :, None] != region_w[:, None, :]) | ~valid_w[:, None, :]
    return torch.zeros(masked.shape, device=device).masked_fill(masked, MASK_VALUE), shift


class WindowAttention(nn.Module):
    relative_position_index: Tensor  # a buffer
    """Multi-head self-attention inside non-overlapping windows, optionally shifted.

    Args:
        dim: channels.
        window_size: side of the square window (4 in the paper).
        head_dim: channels per head (32 in the paper); heads = max(dim // head_dim, 1).
        shift: cyclic shift of the windows (window_size // 2 for SW-MSA, 0 for W-MSA).
    """

    def __init__(self, dim: int, window_size: int = 4, head_dim: int = 32, shift: int = 0):
        super().__init__()
        if not 0 <= shift < window_size:
            raise ValueError(f"shift must be in [0, {window_size}), got {shift}")
        self.dim, self.window_size, self.shift = dim, window_size, shift
        self.heads = max(dim // head_dim, 1)
        if dim % self.heads:
            raise ValueError(f"dim {dim} is not divisible into {self.heads} heads")
        self.scale = (dim // self.heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, self.heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer(
            "relative_position_index", _relative_position_index(window_size), persistent=False
        )
        self._mask_cache: dict[tuple[int, int, str], tuple[Tensor, int]] = {}

    def relative_position_bias(self) -> Tensor:
        """(heads, ws*ws, ws*ws)"""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(n, n, self.heads).permute(2, 0, 1)

    def masks(self, H: int, W: int, device: torch.device) -> tuple[Tensor, int]:
        if torch.compiler.is_compiling():  # a traced constant: a cache would be a guard
            return window_masks(H, W, self.window_size, self.shift, device)
        key = (H, W, str(device))
        if key not in self._mask_cache:
            self._mask_cache[key] = window_masks(H, W, self.window_size, self.shift, device)
        return self._mask_cache[key]

    def to_windows(self, x: Tensor, shift: int) -> Tensor:
        """(B, C, H, W) -> (B * nW, ws*ws, C): pad, roll, partition."""
        C, H, W = x.shape[1:]
        ws = self.window_size
        x = F.pad(x, (0, (-W) % ws, 0, (-H) % ws))
        if shift:
            x = x.roll((-shift, -shift), (2, 3))
        return _partition(x, ws).permute(0, 2, 3, 1).reshape(-1, ws * ws, C)

    def from_windows(self, w: Tensor, B: int, H: int, W: int, shift: int) -> Tensor:
        """Inverse of :meth:`to_windows`, cropped back to (B, C, H, W)."""
        ws = self.window_size
        Hp, Wp = H + (-H) % ws, W + (-W) % ws
        C = w.shape[-1]
        x = w.reshape(B, Hp // ws, Wp // ws, ws, ws, C).permute(0, 5, 1, 3, 2, 4)
        x = x.reshape(B, C, Hp, Wp)
        if shift:
            x = x.roll((shift, shift), (2, 3))
        return x[:, :, :H, :W]

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        mask, shift = self.masks(H, W, x.device)
        windows = self.to_windows(x, shift)  # B*nW, N, C
        BW, N, _ = windows.shape
        nW = mask.shape[0]
        qkv = self.qkv(windows).reshape(BW, N, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each BW, heads, N, d
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.relative_position_bias()
        attn = attn.reshape(B, nW, self.heads, N, N) + mask[None, :, None].to(attn.dtype)
        attn = attn.softmax(dim=-1).reshape(BW, self.heads, N, N)
        out = (attn @ v).transpose(1, 2).reshape(BW, N, C)
        return self.from_windows(self.proj(out), B, H, W, shift)

    def extra_repr(self) -> str:
        ws, heads, shift = self.window_size, self.heads, self.shift
        return f"dim={self.dim}, window_size={ws}, heads={heads}, shift={shift}"
