"""The context models: masks are structure, never taken from a state dict."""

from __future__ import annotations

import torch

from ltchm.codec import ImageCodec
from ltchm.codec.checkpoint import prepare_for_coding
from ltchm.zoo import get_model


def test_a_checkerboard_state_initialises_an_autoregressive_model() -> None:
    """train --init-from across contexts: the weights move, the mask stays the model's own,
    and the autoregressive coder round-trips (with the checkerboard mask it could not)."""
    torch.manual_seed(0)
    cb = get_model("ltchm-baseline", N=8, context="checkerboard")
    ar = get_model("ltchm-baseline", N=8, context="autoregressive")
    ar_mask = ar.context_model.conv.mask.clone()
    assert not torch.equal(ar_mask, cb.context_model.conv.mask)
    ar.load_state_dict(cb.state_dict())
    assert torch.equal(ar.context_model.conv.mask, ar_mask)
    assert torch.equal(ar.context_model.conv.weight, cb.context_model.conv.weight)
    ar.eval()
    codec = ImageCodec(prepare_for_coding(ar), tile_size=0)
    x = torch.rand(3, 64, 64)
    data = codec.encode(x)
    assert codec.decode(data).shape == x.shape
