"""``--model pretrained:<set>/<λ>``: the trained sets shipped in samples/models."""

from __future__ import annotations

import pytest
import torch

from ltchm.codec import load_model, save_checkpoint
from ltchm.codec import pretrained as pre
from ltchm.zoo import get_model
from ltchm.zoo import main as list_models_main


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "tiny"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    for lmbda in (128, 2048):
        save_checkpoint(get_model("ltchm", N=8, context="checkerboard"),
                        folder / f"lambda_{lmbda}.pt", lmbda=lmbda)  # fmt: skip
    (folder / "MODEL_CARD.md").write_text("# tiny\n")
    (tmp_path / "models" / "no-card").mkdir()  # a folder without a card is not a set
    monkeypatch.setattr(pre, "pretrained_dir", lambda: tmp_path / "models")
    return folder


def test_a_set_and_its_rate_points_load_by_name(shipped, capsys) -> None:
    assert pre.pretrained_sets() == {
        "tiny": {128.0: shipped / "lambda_128.pt", 2048.0: shipped / "lambda_2048.pt"}
    }
    model = load_model("pretrained:tiny/2048")
    assert model.lmbda == 2048 and model.N == 8 and model.ready()
    assert list_models_main([]) == 0
    assert "tiny: λ = 128, 2048" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("pretrained:nope/512", r"no pretrained set 'nope' \(in .*: tiny: 128, 2048\)"),
        ("pretrained:tiny/512", r"pretrained:tiny/<λ> \(128, 2048\)"),
        ("pretrained:tiny", r"pretrained:tiny/<λ> \(128, 2048\)"),
    ],
)
def test_a_wrong_name_says_what_exists(shipped, spec, message) -> None:
    with pytest.raises(ValueError, match=message):
        load_model(spec)
