import pytest
import torch

from ltchm.config import ModelConfig
from ltchm.models import LTCHM
from ltchm.zoo import get_model, list_models, model_from_config


def test_registry_names() -> None:
    assert list_models() == [
        "ltchm",
        "ltchm-baseline",
        "ltchm-dam",
        "ltchm-hpham",
        "ltchm-hpham-nogca",
        "fdegcnet",
        "tcm",
        "cheng2020-attn",
        "cheng2020-anchor",
    ]


def test_unknown_name_lists_what_exists() -> None:
    with pytest.raises(KeyError, match="cheng2020-attn") as info:
        get_model("ltchm-large")
    assert "ltchm-baseline" in str(info.value)


def test_unknown_key_is_named() -> None:
    with pytest.raises(TypeError, match="does not take depth"):
        get_model("ltchm", N=32, depth=3)
    with pytest.raises(TypeError, match="does not take mixture"):
        get_model("cheng2020-attn", N=32, mixture="laplace")


def test_ablation_variants_differ_as_table_4_says() -> None:
    names = [n for n in list_models() if n.startswith("ltchm")]
    counts = {n: sum(p.numel() for p in get_model(n, N=32).parameters()) for n in names}
    base = counts["ltchm-baseline"]
    assert base < counts["ltchm-dam"] < counts["ltchm"]
    assert base < counts["ltchm-hpham-nogca"] < counts["ltchm-hpham"] < counts["ltchm"]
    full = get_model("ltchm", N=32)
    assert isinstance(full, LTCHM) and full.variant.dam and full.variant.hpham and full.variant.gca


def test_model_from_config() -> None:
    m = model_from_config(ModelConfig(N=32, mixture="laplace", context="checkerboard"))
    assert isinstance(m, LTCHM)
    assert (m.N, m.mixture, m.context) == (32, "laplace", "checkerboard")
    cheng = model_from_config(ModelConfig(name="cheng2020-anchor", N=32))
    assert type(cheng).__name__ == "Cheng2020Anchor"
    with pytest.raises(TypeError, match=r"model\.mixture"):
        model_from_config(ModelConfig(name="cheng2020-attn", N=32, mixture="laplace"))


def test_baselines_forward() -> None:
    for name in ("cheng2020-attn", "cheng2020-anchor"):
        out = get_model(name, N=32).eval()(torch.rand(1, 3, 64, 64))
        assert out["x_hat"].shape == (1, 3, 64, 64)
