"""TCM: its size against the released code, training gradients, the reproducible entropy path
against the float one, and real coding (exact across threads and batches)."""

from __future__ import annotations

import pytest
import torch
from compressai.layers import GDN, ResidualBlock, ResidualBlockUpsample, subpel_conv3x3

from ltchm.entropy.latent import YStreamError
from ltchm.layers.tcm import ConvTransBlock, ResidualUnit, SWAtten, SwinBlock2d
from ltchm.models.tcm import TCM, det_tanh, tcm_program
from ltchm.zoo import get_model, model_from_config

# Parameters of the authors' TCM (github.com/jmliu206/LIC_TCM, models/tcm.py at commit
# 6c6d7a364817a4c372bd210dbbcb175f9172caa0), counted by running that code:
# sum(p.numel() for p in TCM(N=N).parameters()). The paper prints 45.18 / 59.13 / 76.57 M.
RELEASED_PARAMS = {64: 45_180_752, 96: 59_133_650, 128: 76_568_148}


@pytest.mark.parametrize("N", sorted(RELEASED_PARAMS))
def test_parameters_match_the_released_code(N: int) -> None:
    model = get_model("tcm", N=N)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / RELEASED_PARAMS[N] - 1) < 0.05, count


def test_config_and_bad_width() -> None:
    from ltchm.config import ModelConfig

    m = model_from_config(ModelConfig(name="tcm", N=64))
    assert isinstance(m, TCM) and m.N == 64
    with pytest.raises(TypeError, match=r"model\.mixture"):
        model_from_config(ModelConfig(name="tcm", N=64, mixture="laplace"))
    with pytest.raises(ValueError, match="multiple of 32"):
        TCM(N=48)


def test_forward_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    m = TCM(N=32).train()
    x = torch.rand(2, 3, 64, 128)
    out = m(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 320, 4, 8)
    assert out["likelihoods"]["z"].shape == (2, 192, 1, 2)
    bpp = sum(-lk.log2().sum() for lk in out["likelihoods"].values()) / (2 * 64 * 128)
    (bpp + ((out["x_hat"] - x) ** 2).mean()).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None and "quantiles" not in n]
    assert not missing, missing
    with pytest.raises(ValueError, match="multiples of 64"):
        m(torch.rand(1, 3, 64, 96))


def _close(module: torch.nn.Module, x: torch.Tensor, tol: float = 2e-4) -> None:
    prog = tcm_program()
    with torch.no_grad():
        ref = module.eval()(x).double()
    out = prog.run(module, x)
    assert out.shape == ref.shape
    assert float((out - ref).norm() / ref.norm()) < tol


def _gdn(inverse: bool) -> GDN:
    g = GDN(16, inverse=inverse)
    with torch.no_grad():  # away from the identity it is built as
        g.gamma.add_(torch.rand_like(g.gamma) * 0.1)
        g.beta.add_(torch.rand_like(g.beta))
    return g


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (SwinBlock2d(32, 16, 8, 0), (2, 32, 8, 16)),
        (SwinBlock2d(32, 16, 8, 4), (2, 32, 12, 4)),  # padded and shifted
        (ConvTransBlock(16, 16, 8, 4, 2), (2, 32, 6, 8)),
        (ResidualUnit(32), (2, 32, 5, 6)),
        (SWAtten(96, 96, 32, 16, 8), (2, 96, 8, 12)),
        (ResidualBlock(16, 24), (2, 16, 5, 5)),
        (ResidualBlockUpsample(24, 16, 2), (2, 24, 3, 4)),
        (_gdn(True), (2, 16, 4, 5)),
        (_gdn(False), (2, 16, 4, 5)),
        (subpel_conv3x3(16, 8, 2), (2, 16, 3, 3)),
    ],
)
def test_module_tracks_float_forward(module: torch.nn.Module, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    _close(module, torch.randn(shape))


def test_det_tanh() -> None:
    x = torch.linspace(-30, 30, 1001, dtype=torch.float64)
    assert float((det_tanh(x) - torch.tanh(x)).abs().max()) < 1e-14


def test_entropy_path_tracks_the_float_model() -> None:
    """The slice loop (SWAtten, slice transforms, LRP) through the DetProgram gives the float
    model's means, scales and y_hat; and per image, independent of the batch."""
    torch.manual_seed(0)
    m = TCM(N=32).eval()
    m.update(force=True)
    prog = m._require_ready()
    z = torch.round(torch.randn(2, 192, 2, 3) * 2)
    y = torch.randn(2, 320, 8, 12) * 3
    seen: dict[str, list[torch.Tensor]] = {"float": [], "det": []}

    def quantizer(key: str, ys: tuple[torch.Tensor, ...]):
        def q(i: int, mu: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            seen[key] += [mu.double(), scale.double()]
            return torch.round(ys[i] - mu) + mu

        return q

    with torch.no_grad():
        ref = m._slices(
            lambda mod, t: mod(t),
            torch.tanh,
            m.h_mean_s(z),
            m.h_scale_s(z),
            quantizer("float", y.chunk(5, 1)),
        )
    means, scales = m._hyper(prog, z)
    out = m._slices(prog.run, det_tanh, means, scales, quantizer("det", y.double().chunk(5, 1)))
    for a, b in zip(seen["det"], seen["float"], strict=True):
        assert float((a - b).norm() / b.norm()) < 1e-3
    # rounding may flip where y - mu sits near a half: compare where both agree on it
    assert float((out - ref.double()).abs().median()) < 1e-3
    one_m, one_s = m._hyper(prog, z[1:])
    assert torch.equal(one_m, means[1:]) and torch.equal(one_s, scales[1:])


def _coded(m: TCM, x: torch.Tensor) -> tuple[list[bytes], torch.Tensor]:
    c = m.compress(x)
    return c["strings"][0], m.decompress(c["strings"], c["shape"])["y_hat"]


def test_round_trip_is_exact_across_threads_and_batches() -> None:
    torch.manual_seed(0)
    m = TCM(N=32).eval()
    m.update(force=True)
    x = torch.rand(2, 3, 64, 128)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        strings2, y2 = _coded(m, x)
        torch.set_num_threads(1)
        strings1, y1 = _coded(m, x)
        single, y_single = _coded(m, x[1:])
    finally:
        torch.set_num_threads(previous)
    assert strings1 == strings2 and torch.equal(y1, y2)
    assert single[0] == strings1[1] and torch.equal(y_single[0], y1[1])
    # the decoder's y_hat is the encoder's: its symbols are within half a step of y
    with torch.no_grad():
        y = m.g_a(x).double()
    assert float((y1 - y).abs().max()) < 1.0  # 0.5 rounding + 0.5 LRP at most
    # a corrupted stream is an error, never a wrong image
    bad = bytearray(strings1[0])
    bad[12] ^= 0xFF
    z_strings = m.compress(x[:1])["strings"][1]
    with pytest.raises((YStreamError, ValueError)):
        m.decompress([[bytes(bad)], z_strings], (1, 2))


def test_coding_needs_tables() -> None:
    m = TCM(N=32).eval()
    with pytest.raises(RuntimeError, match="update"):
        m.compress(torch.rand(1, 3, 64, 64))
