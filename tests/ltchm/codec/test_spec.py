"""Model specs: what a compressed file records about its model, and reading it back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ltchm.codec import save_checkpoint
from ltchm.codec.identity import identity_of
from ltchm.codec.spec import load_model, load_recorded_model, recorded_spec, spec_source
from ltchm.zoo import get_model


def test_recorded_sources_parse(tmp_path: Path) -> None:
    assert recorded_spec(None) is None
    assert recorded_spec("ltchm (registry, untrained)") is None
    spec = "models:/ltchm-lambda512/3 (sqlite:////data/mlruns.db; alias champion when encoded)"
    assert recorded_spec(spec) == ("models:/ltchm-lambda512/3", "sqlite:////data/mlruns.db")
    assert recorded_spec("pretrained:cpu-2h/512") == ("pretrained:cpu-2h/512", None)
    assert recorded_spec("/nowhere/model.pt") is None
    (tmp_path / "m.pt").write_bytes(b"")
    assert recorded_spec(str(tmp_path / "m.pt")) == (str(tmp_path / "m.pt"), None)


def test_a_checkpoint_is_found_again_from_its_recorded_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LTCHM_MODEL_STORE", str(tmp_path / "empty-store"))
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(get_model("ltchm-baseline", N=8, context="checkerboard"), ckpt, lmbda=512)
    model = load_model(str(ckpt))
    source = spec_source(str(ckpt))
    assert source == str(ckpt.resolve())
    again = load_recorded_model(identity_of(model), source)
    assert identity_of(again).matches(identity_of(model))
    ckpt.unlink()
    with pytest.raises(LookupError, match="pass --model") as err:
        load_recorded_model(identity_of(model), source)
    assert "\n" not in str(err.value) and "not in the local model store" in str(err.value)
