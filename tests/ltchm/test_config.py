from pathlib import Path

import pytest

from ltchm.config import (
    LAMBDAS,
    Config,
    ConfigError,
    config_from_dict,
    config_hash,
    dump_config,
    load_config,
)
from ltchm.paths import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"


@pytest.mark.parametrize("lmbda", LAMBDAS)
def test_lambda_configs_match_the_paper(lmbda: int) -> None:
    cfg = load_config(CONFIGS / f"lambda_{lmbda}.yaml")
    assert cfg.loss.lmbda == lmbda
    assert (192 if lmbda <= 512 else 256) == cfg.model.N
    assert cfg.loss.metric == "mse"
    # the paper's recipe by default
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.patch_size) == (200_000, 8, 256)
    assert (cfg.train.lr, cfg.train.lr_final, cfg.train.lr_drop_at) == (1e-4, 1e-5, 0.5)


@pytest.mark.parametrize("lmbda", LAMBDAS)
def test_fdegcnet_configs_follow_its_released_recipe(lmbda: int) -> None:
    cfg = load_config(CONFIGS / "fdegcnet" / f"lambda_{lmbda}.yaml")
    assert (cfg.model.name, cfg.loss.lmbda, cfg.loss.metric) == ("fdegcnet", lmbda, "mse")
    assert (192 if lmbda <= 512 else 256) == cfg.model.N  # its README's config_<L>_<N>.json
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.patch_size) == (200_000, 8, 256)
    assert (cfg.train.lr, cfg.train.lr_final, cfg.train.lr_drop_at) == (1e-4, 1e-5, 0.92)
    assert cfg.tracking.registered_model == "fdegcnet"


def test_round_trip_through_dict() -> None:
    cfg = load_config(CONFIGS / "lambda_2048.yaml", {"train.steps": 7, "model.mixture": "laplace"})
    again = config_from_dict(dump_config(cfg))
    assert again == cfg
    assert config_hash(again.model) == config_hash(cfg.model)
    assert config_hash(cfg.model) != config_hash(Config().model)


def test_extends_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("model: {N: 64}\ntrain: {lr: 3e-4}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nmodel: {context: checkerboard}\n")
    cfg = load_config(tmp_path / "child.yaml", {"train.steps": 10})
    assert (cfg.model.N, cfg.model.context, cfg.train.lr, cfg.train.steps) == (
        64,
        "checkerboard",
        3e-4,
        10,
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("model: {N: abc}", "model.N"),
        ("model: {Nn: 64}", "model.Nn: unknown key"),
        ("loss: {lmbda: -1}", "loss.lmbda"),
        ("train: {steps: true}", "train.steps"),
        ("model: {mixture: cauchy}", "model.mixture"),
        ("bogus: {}", "bogus: unknown key"),
        ("model: [1, 2]", "model"),
    ],
)
def test_errors_name_the_offending_key(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(path)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("model: {N: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_extends_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_shipped_configs_by_name_from_any_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    by_name = load_config("lambda_512")
    assert by_name.loss.lmbda == 512
    assert load_config("configs/lambda_512.yaml") == by_name
    assert (
        load_config("cpu.yaml").model.N == load_config(REPO_ROOT / "configs" / "cpu.yaml").model.N
    )
    (tmp_path / "lambda_512.yaml").write_text("loss:\n  lmbda: 7\n")  # a local file wins
    assert load_config("lambda_512.yaml").loss.lmbda == 7
    with pytest.raises(ConfigError, match="not found"):
        load_config("lambda_999")
