"""``ltchm.runtime``: the compiled training forward (``train.compile``)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch._dynamo.utils import counters

from ltchm.layers import DAM
from ltchm.losses import RateDistortionLoss
from ltchm.models.ltchm import LTCHM, Variant
from ltchm.runtime import compile_for_training


def _step(model: LTCHM, x: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = RateDistortionLoss(512.0)(model(x), x)["loss"]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads


def test_compiled_dams_train_as_eager_and_coding_stays_eager() -> None:
    torch.manual_seed(0)
    eager = LTCHM(N=16, context="checkerboard").train()
    model = copy.deepcopy(eager)
    keys = list(model.state_dict())
    names = compile_for_training(model, torch.device("cpu"))
    assert names == [n for n, m in model.named_modules() if isinstance(m, DAM)]
    assert len(names) == 4 and list(model.state_dict()) == keys

    x = torch.rand(4, 3, 64, 64)
    torch.manual_seed(1)  # the same rate noise for both
    loss_e, grads_e = _step(eager, x)
    frames = counters["stats"]["unique_graphs"]
    torch.manual_seed(1)
    loss_c, grads_c = _step(model, x)
    assert counters["stats"]["unique_graphs"] > frames  # the DAMs did compile
    assert loss_c == pytest.approx(loss_e, rel=1e-4)
    assert grads_c.keys() == grads_e.keys()
    # fused kernels sum in another order: the gradient agrees as a whole and per tensor
    # (BatchNorm over a few pooled values makes the smallest ones ill-conditioned)
    flat_e, flat_c = (torch.cat([g[n].flatten() for n in grads_e]) for g in (grads_e, grads_c))
    assert (flat_c - flat_e).norm() <= 1e-4 * flat_e.norm()
    worst = max((grads_c[n] - g).norm() / (g.norm() + 1e-20) for n, g in grads_e.items())
    assert worst <= 1e-2

    # eval and no-grad calls (validation, coding) run the eager forward: no new compilation
    # whatever the size, and exactly the eager model's numbers
    compiled_graphs = counters["stats"]["unique_graphs"]
    model.eval(), eager.eval()
    with torch.no_grad():
        for size in (64, 128):
            y = torch.rand(1, 3, size, size)
            assert torch.equal(model(y)["x_hat"], eager(y)["x_hat"])
    model.train()
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    assert counters["stats"]["unique_graphs"] == compiled_graphs


def test_a_model_without_its_units_is_compiled_whole() -> None:
    # an ablation without DAM: compilation is lazy, so naming the target costs nothing
    model = LTCHM(N=16, variant=Variant(dam=False))
    assert compile_for_training(model, torch.device("cpu")) == ["LTCHM"]


def test_no_compiler_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"train.compile on CPUs needs a C\+\+ compiler"):
        compile_for_training(LTCHM(N=16), torch.device("cpu"))
