import pytest
import torch

from ltchm.losses import RateDistortionLoss
from ltchm.zoo import get_model


@pytest.mark.parametrize("N", [128, 192, 256])
@pytest.mark.parametrize("batch", [1, 3])
def test_shapes(N: int, batch: int) -> None:
    model = get_model("ltchm", N=N).eval()
    with torch.no_grad():
        out = model(torch.rand(batch, 3, 128, 192))
    assert out["x_hat"].shape == (batch, 3, 128, 192)
    assert out["likelihoods"]["y"].shape == (batch, N, 8, 12)
    assert out["likelihoods"]["z"].shape == (batch, N, 2, 3)
    assert model.entropy_parameters[0].in_channels == 4 * N
    assert model.entropy_parameters[0].out_channels == 640
    assert model.entropy_parameters[-1].out_channels == 9 * N


def test_size_must_be_a_multiple_of_the_stride() -> None:
    model = get_model("ltchm", N=32)
    with pytest.raises(ValueError, match="multiples of 64, got 100x64"):
        model(torch.rand(1, 3, 100, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 4, 64, 64))


@pytest.mark.parametrize(
    ("mixture", "context"), [("gaussian", "autoregressive"), ("laplace", "checkerboard")]
)
def test_gradients_reach_every_parameter(mixture: str, context: str) -> None:
    torch.manual_seed(0)
    model = get_model("ltchm", N=32, mixture=mixture, context=context).train()
    # An untrained latent of this tiny model is below 0.5 almost everywhere, so y_hat is ~0
    # and what g_s sees first gets no gradient; a trained model's latent is large.
    with torch.no_grad():
        model.g_a[-2].weight.mul_(20)
    x = torch.rand(2, 3, 128, 128)
    out = RateDistortionLoss(512)(model(x), x)
    (out["loss"] + model.aux_loss()).backward()
    params = dict(model.named_parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params.values())
    # A GCA branch narrows C/2 channels to C/64 = 1 unit behind a ReLU at this tiny N; on a
    # batch of two all branches may be inactive, a legitimate zero gradient for them and for
    # the fusion weights behind them. Everything else must move.
    zero = [n for n, p in params.items() if not p.grad.abs().sum() > 0 and ".gca." not in n]
    assert not zero, zero


def test_trains_at_batch_size_one() -> None:
    model = get_model("ltchm", N=32).train()
    x = torch.rand(1, 3, 64, 64)
    RateDistortionLoss(128)(model(x), x)["loss"].backward()


def test_eval_rounds_and_is_deterministic() -> None:
    model = get_model("ltchm", N=32).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a["x_hat"], b["x_hat"], rtol=0, atol=0)
    lik = a["likelihoods"]["y"]
    assert (lik > 0).all() and (lik <= 1).all()


@pytest.mark.parametrize("N", [128, 192, 256])
def test_authors_layout_has_the_released_codes_parameters(N: int) -> None:
    from ltchm.complexity import RELEASED_PARAMS_M

    model = get_model("ltchm", N=N)
    assert model.dam_layout == "authors"  # the default
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params / RELEASED_PARAMS_M[N] - 1) < 0.05, params


@pytest.mark.parametrize(("layout", "dams", "hphams"), [("authors", 4, 2), ("table1", 7, 4)])
def test_layouts_place_their_modules(layout: str, dams: int, hphams: int) -> None:
    from ltchm.layers import DAM, HPHAM

    model = get_model("ltchm", N=32, dam_layout=layout)
    assert sum(isinstance(m, DAM) for m in model.modules()) == dams
    assert sum(isinstance(m, HPHAM) for m in model.modules()) == hphams
    # the released code keeps DAM at 1/4 and 1/16 of both main transforms
    if layout == "authors":
        assert [i for i, m in enumerate(model.g_a) if isinstance(m, DAM)] == [3, 8]
        assert [i for i, m in enumerate(model.g_s) if isinstance(m, DAM)] == [0, 5]
    ablation = get_model("ltchm-baseline", N=32, dam_layout=layout).eval()
    assert not any(isinstance(m, (DAM, HPHAM)) for m in ablation.modules())
    with torch.no_grad():
        assert ablation(torch.rand(1, 3, 64, 64))["x_hat"].shape == (1, 3, 64, 64)


def test_unknown_layout_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown dam_layout 'paper': authors or table1"):
        get_model("ltchm", N=32, dam_layout="paper")
