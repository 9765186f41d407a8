"""keep_in_float32: GDN and the entropy models in float32 under bf16 autocast."""

from __future__ import annotations

import copy

import pytest
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN

from ltchm.layers.precision import keep_in_float32
from ltchm.losses import RateDistortionLoss
from ltchm.zoo import get_model

BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


def _bottleneck() -> EntropyBottleneck:
    torch.manual_seed(0)
    eb = EntropyBottleneck(8).eval()
    with torch.no_grad():  # a trained-looking density, not the flat initial one
        for p in eb.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return eb


def test_entropy_bottleneck_under_autocast_is_the_float32_one() -> None:
    eb, z = _bottleneck(), 3 * torch.randn(2, 8, 6, 6)
    _, ref = eb(z)
    with torch.autocast(**BF16):
        _, bare = eb(z)
    keep_in_float32(eb)
    with torch.autocast(**BF16):
        _, kept = eb(z)
    assert not torch.equal(bare.float(), ref)  # autocast alone rounds the density: the case
    assert kept.dtype == torch.float32 and torch.equal(kept, ref)


def _float32(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", enabled=False):
        out: torch.Tensor = module(x)
    return out


def test_gdn_under_autocast_is_the_float32_one_and_autocast_resumes_after() -> None:
    torch.manual_seed(1)
    gdn, igdn = GDN(8), GDN(8, inverse=True)
    with torch.no_grad():
        gdn.gamma.add_(0.05 * torch.rand_like(gdn.gamma))
    x = torch.randn(2, 8, 5, 5)
    ref = _float32(gdn, x)
    with torch.autocast(**BF16):
        bare = gdn(x)
    assert not torch.equal(bare.float(), ref)  # autocast alone normalises in bf16: the case
    net = torch.nn.Sequential(gdn, torch.nn.Conv2d(8, 8, 1), igdn)
    keep_in_float32(net)
    with torch.autocast(**BF16):
        assert torch.equal(net[0](x), ref)
        out = net(x)
        # the convolution between the two GDNs ran under autocast again
        assert torch.is_autocast_enabled("cpu")
        mid = net[1](ref)
    assert mid.dtype == torch.bfloat16
    assert out.dtype == torch.float32 and torch.equal(out, _float32(igdn, mid.float()))


def test_outside_autocast_nothing_changes_and_copies_keep_the_hooks() -> None:
    torch.manual_seed(2)
    model = get_model("ltchm", N=16, context="checkerboard").eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)["x_hat"]
    keys = list(model.state_dict())
    handles = keep_in_float32(model)
    assert len(handles) == 2 * sum(isinstance(m, (GDN, EntropyBottleneck)) for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x)["x_hat"], before)
    assert list(model.state_dict()) == keys
    twin = copy.deepcopy(model)  # the worker's snapshots deep-copy the module
    with torch.no_grad(), torch.autocast(**BF16):
        a, b = model(x), twin(x)
    assert torch.equal(a["likelihoods"]["z"], b["likelihoods"]["z"])
    for h in handles:
        h.remove()


def test_an_exception_inside_closes_the_float32_island() -> None:
    class Broken(GDN):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert not torch.is_autocast_enabled("cpu")  # inside the island
            raise RuntimeError("boom")

    net = Broken(4)
    keep_in_float32(net)
    with torch.autocast(**BF16):
        with pytest.raises(RuntimeError, match="boom"):
            net(torch.randn(1, 4, 3, 3))
        assert torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("name", ["ltchm", "cheng2020-attn", "fdegcnet"])
def test_models_train_a_step_under_bf16_autocast(name: str) -> None:
    torch.manual_seed(3)
    model = get_model(name, N=16).train()
    keep_in_float32(model)
    x = torch.rand(2, 3, 64, 64)
    with torch.autocast(**BF16):
        out = model(x)
    assert out["x_hat"].dtype == torch.bfloat16  # the network did run in bf16
    assert all(v.dtype == torch.float32 for v in out["likelihoods"].values())
    loss = RateDistortionLoss(512)(out, x)
    loss["loss"].backward()
    model.aux_loss().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
