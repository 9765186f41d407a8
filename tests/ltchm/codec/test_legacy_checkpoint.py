"""Checkpoints written before ``model.dam_layout`` existed are table1 models and load as such."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ltchm.codec import load_checkpoint, save_checkpoint
from ltchm.codec.identity import identity_of
from ltchm.config import ModelConfig, config_hash
from ltchm.zoo import get_model, model_from_config, recorded_model_config


def _legacy_hash(section: dict) -> str:
    # how config_hash digested a model section before the key existed
    return hashlib.sha256(json.dumps(section, sort_keys=True).encode()).hexdigest()


def test_an_old_checkpoint_loads_as_table1(tmp_path: Path) -> None:
    torch.manual_seed(0)
    old = get_model("ltchm", N=32, dam_layout="table1")
    path = tmp_path / "old.pt"
    save_checkpoint(old, path, lmbda=128)
    payload = torch.load(path, weights_only=True)
    del payload["model"]["dam_layout"]  # what checkpoints of earlier versions record
    torch.save(payload, path)

    loaded = load_checkpoint(path)
    assert loaded.dam_layout == "table1" and loaded.model_config.dam_layout == "table1"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["x_hat"], old.eval()(x)["x_hat"], rtol=0, atol=0)
    # its identity is the one files encoded by the old version recorded
    assert identity_of(loaded).config_hash == _legacy_hash(payload["model"])


def test_recorded_sections_fill_only_keys_their_model_takes() -> None:
    assert recorded_model_config({"name": "ltchm", "N": 64}).dam_layout == "table1"
    assert recorded_model_config({"name": "ltchm", "dam_layout": "authors"}).dam_layout == (
        "authors"
    )
    cheng = recorded_model_config({"name": "cheng2020-attn", "N": 64})
    assert cheng.dam_layout == ModelConfig().dam_layout  # dropped as a default, not an error
    model_from_config(cheng)


def test_the_hash_tells_the_layouts_apart() -> None:
    assert config_hash(ModelConfig(dam_layout="table1")) != config_hash(ModelConfig())
