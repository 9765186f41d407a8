"""Spatial context models over y_hat: the paper's 5x5 masked convolution (serial, raster
order) and the two-pass checkerboard context of He et al. (2021)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from compressai.layers import CheckerboardMaskedConv2d, MaskedConv2d
from torch import Tensor, nn

__all__ = ["ContextMode", "ContextModel", "anchor_mask"]

ContextMode = Literal["autoregressive", "checkerboard"]


def anchor_mask(H: int, W: int, device: torch.device | None = None) -> Tensor:
    """Boolean (H, W) map of checkerboard anchors: positions with (h + w) even."""
    idx = torch.arange(H, device=device)[:, None] + torch.arange(W, device=device)[None, :]
    return idx % 2 == 0


class ContextModel(nn.Module):
    """Context features (B, 2N, H, W) from y_hat (B, N, H, W).

    ``autoregressive``: each position sees the positions before it in raster order within a
    5 x 5 window (mask 'A'). ``checkerboard``: anchors see nothing (their context is zero);
    non-anchors see the anchors among their 5 x 5 neighbours.
    """

    def __init__(self, N: int, mode: ContextMode = "autoregressive", kernel_size: int = 5):
        super().__init__()
        if mode not in ("autoregressive", "checkerboard"):
            raise ValueError(f"unknown context mode {mode!r}: autoregressive or checkerboard")
        self.mode = mode
        conv = MaskedConv2d if mode == "autoregressive" else CheckerboardMaskedConv2d
        self.conv = conv(N, 2 * N, kernel_size, padding=kernel_size // 2, mask_type="A")

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # The convolution's mask is a buffer, so a state dict carries it; but it is this
        # model's structure, not a learned value. Initialising an autoregressive model from a
        # checkerboard one (train --init-from) would otherwise install the checkerboard mask:
        # positions would see rows below them, and the raster-order decoder could not
        # reproduce what the encoder saw.
        key = prefix + "conv.mask"
        if key in state_dict:
            state_dict[key] = self.conv.mask.detach().clone()
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, y_hat: Tensor) -> Tensor:
        ctx: Tensor = self.conv(y_hat)
        if self.mode == "checkerboard":
            H, W = y_hat.shape[-2:]
            ctx = ctx.masked_fill(anchor_mask(H, W, y_hat.device), 0.0)
        return ctx
