"""Checkpoints with float16 weights: half the file, and exactly the model that was saved."""

from __future__ import annotations

import torch

from ltchm.codec import ImageCodec, load_checkpoint, save_checkpoint
from ltchm.codec.identity import weights_hash
from ltchm.zoo import get_model


def test_half_checkpoint_loads_as_the_saved_model_and_decodes_its_files(tmp_path) -> None:
    torch.manual_seed(0)
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    save_checkpoint(get_model("ltchm", N=16, context="checkerboard"), full, lmbda=512)
    model = load_checkpoint(full)
    digest = save_checkpoint(model, half, lmbda=512, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    payload = torch.load(half, weights_only=True)
    assert {v.dtype for v in payload["state_dict"].values() if v.is_floating_point()} == {
        torch.float16
    }
    loaded = load_checkpoint(half)  # its weights hash is checked against the file's
    assert weights_hash(loaded) == digest == payload["weights_hash"] == weights_hash(model)
    # a file the in-memory (rounded) model wrote decodes with the loaded one, bit for bit
    x = torch.rand(3, 70, 130)
    data = ImageCodec(model).encode(x)
    assert torch.equal(ImageCodec(loaded).decode(data), ImageCodec(model).decode(data))
    # and the rounding moved the weights by float16's precision, no more
    ref = load_checkpoint(full).state_dict()
    for key, value in loaded.state_dict().items():
        if value.is_floating_point() and value.numel():
            assert torch.allclose(value, ref[key].float(), rtol=1e-3, atol=1e-4), key
