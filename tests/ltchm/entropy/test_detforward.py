"""The reproducible evaluation of every module of the entropy-parameter path tracks the
float forward used in training, and is exact where the codec relies on it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ltchm.entropy.detforward import DetProgram
from ltchm.layers import GCA, HPHAM, MSBFFN, LayerNorm2d, WindowAttention
from ltchm.zoo import get_model


def _close(module, x, tol=2e-4) -> None:
    prog = DetProgram()
    with torch.no_grad():
        ref = module.eval()(x).double()
    out = prog.run(module, x)
    assert out.shape == ref.shape
    assert float((out - ref).norm() / ref.norm()) < tol


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (LayerNorm2d(32), (2, 32, 5, 6)),
        (WindowAttention(64, 4, 32, 0), (2, 64, 6, 9)),
        (WindowAttention(64, 4, 32, 2), (2, 64, 8, 8)),
        (GCA(64), (2, 64, 5, 5)),
        (MSBFFN(32), (2, 32, 6, 6)),
        (HPHAM(64), (2, 64, 5, 7)),
        (torch.nn.ConvTranspose2d(16, 8, 3, 2, 1, 1), (2, 16, 4, 5)),
    ],
)
def test_module_tracks_float_forward(module, shape) -> None:
    torch.manual_seed(0)
    _close(module, torch.randn(shape))


@pytest.mark.parametrize("context", ["autoregressive", "checkerboard"])
def test_entropy_path_of_the_model(context: str) -> None:
    torch.manual_seed(0)
    m = get_model("ltchm", N=32, context=context).eval()
    prog = DetProgram()
    z = torch.round(torch.randn(2, 32, 3, 4) * 3)
    y = torch.round(torch.randn(2, 32, 12, 16) * 4)
    with torch.no_grad():
        hyper = m.h_s(z).double()
        ctx = m.context_model(y).double()
        params = m.entropy_parameters(torch.cat([ctx.float(), hyper.float()], 1)).double()
    d_hyper = prog.run(m.h_s, z)
    d_ctx = prog.run(m.context_model, y)
    d_params = prog.run(m.entropy_parameters, torch.cat([d_ctx, d_hyper], 1))
    for a, b in ((d_hyper, hyper), (d_ctx, ctx), (d_params, params)):
        assert float((a - b).norm() / b.norm()) < 2e-4
    # exact invariances the decoder relies on
    assert torch.equal(d_hyper, torch.cat([prog.run(m.h_s, z[i : i + 1]) for i in range(2)]))
    part = prog.run(m.entropy_parameters, torch.cat([d_ctx, d_hyper], 1)[:, :, 5:6, 7:8])
    assert torch.equal(d_params[:, :, 5:6, 7:8], part)
    if context == "autoregressive":
        hood = F.pad(y, (2, 2, 2, 2))[:, :, 5:10, 7:12]
        assert torch.equal(
            prog.masked_conv_valid(m.context_model.conv, hood), d_ctx[:, :, 5:6, 7:8]
        )


def test_unknown_module_is_refused() -> None:
    with pytest.raises(TypeError, match="no reproducible evaluation"):
        DetProgram().run(torch.nn.Tanh(), torch.zeros(1))
