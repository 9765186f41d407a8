"""decode_y's serial steps on the CPU copy of the context path (what a GPU decode uses)."""

from __future__ import annotations

import pytest
import torch

from ltchm.entropy import latent
from ltchm.zoo import get_model


@pytest.fixture
def ready_model():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = get_model("ltchm", N=16, context="autoregressive").eval()
    model.update(force=True)
    return model


def test_the_cpu_copy_decodes_what_the_model_decodes(ready_model, monkeypatch) -> None:
    x = torch.rand(1, 3, 128, 128)
    out = ready_model.compress(x)
    direct = ready_model.decompress(out["strings"], out["shape"])["y_hat"]
    # on this CPU-only machine, route through the copy as a GPU decode would
    monkeypatch.setattr(latent, "serial_steps_on_cpu", lambda model, hyper: True)
    via_copy = ready_model.decompress(out["strings"], out["shape"])["y_hat"]
    assert torch.equal(via_copy, direct) and torch.equal(direct, out["y_hat"])
    prog = ready_model._require_ready()
    copy = latent._cpu_paths[prog]
    assert copy.context_model is not ready_model.context_model
    # new weights: a new program, hence a new copy that decodes the new model's files
    with torch.no_grad():
        ready_model.entropy_parameters[0].weight.mul_(1.5)
    out2 = ready_model.compress(x)
    assert ready_model._require_ready() is not prog
    assert torch.equal(
        ready_model.decompress(out2["strings"], out2["shape"])["y_hat"], out2["y_hat"]
    )
    assert latent._cpu_paths[ready_model._require_ready()] is not copy


def test_the_rule(ready_model) -> None:
    hyper = torch.zeros(1, 32, 2, 2)
    assert not latent.serial_steps_on_cpu(ready_model, hyper)  # already on the CPU
    meta = torch.empty(1, 32, 2, 2, device="meta")
    assert latent.serial_steps_on_cpu(ready_model, meta)
    ready_model.serial_decoding_on_cpu = False
    assert not latent.serial_steps_on_cpu(ready_model, meta)
    checkerboard = get_model("ltchm", N=16, context="checkerboard")
    assert not latent.serial_steps_on_cpu(checkerboard, meta)  # two steps: stay on the device
