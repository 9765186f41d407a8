import itertools
import math

import pytest

from ltchm.config import TrainConfig
from ltchm.optim import learning_rate


def test_default_is_the_papers_step_schedule() -> None:
    cfg = TrainConfig(steps=200_000)
    assert learning_rate(cfg, 0) == 1e-4
    assert learning_rate(cfg, 99_999) == 1e-4
    assert learning_rate(cfg, 100_000) == 1e-5
    assert learning_rate(cfg, 199_999) == 1e-5


def test_warm_up_then_cosine_down_to_lr_final() -> None:
    cfg = TrainConfig(steps=1000, lr=1e-3, lr_final=1e-5, lr_schedule="cosine", lr_warmup_steps=100)
    lrs = [learning_rate(cfg, s) for s in range(cfg.steps)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[49] == pytest.approx(5e-4)
    assert lrs[99] == pytest.approx(1e-3) and lrs[100] == pytest.approx(1e-3)
    assert all(a < b for a, b in itertools.pairwise(lrs[:100]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[100:]))
    assert lrs[-1] == pytest.approx(1e-5)
    # half-way through the decay: the mean of lr and lr_final
    assert lrs[100 + 450] == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-2)
    assert all(math.isfinite(v) and v > 0 for v in lrs)


def test_warm_up_applies_to_the_step_schedule_too() -> None:
    cfg = TrainConfig(steps=100, lr=1e-3, lr_warmup_steps=10, lr_drop_at=0.5)
    assert learning_rate(cfg, 0) == pytest.approx(1e-4)
    assert learning_rate(cfg, 10) == 1e-3 and learning_rate(cfg, 50) == cfg.lr_final


def test_fine_tune_lr_is_the_peak_only_when_starting_from_a_model() -> None:
    kw = {"steps": 1000, "lr": 3e-3, "fine_tune_lr": 1e-3, "lr_schedule": "cosine"}
    scratch = TrainConfig(**kw, lr_warmup_steps=100)
    tuned = TrainConfig(**kw, lr_warmup_steps=100, init_from="runs/lambda_512/model.pt")
    assert max(learning_rate(scratch, s) for s in range(1000)) == pytest.approx(3e-3)
    assert max(learning_rate(tuned, s) for s in range(1000)) == pytest.approx(1e-3)
    assert learning_rate(tuned, 0) == pytest.approx(1e-5)
    assert learning_rate(tuned, 999) == pytest.approx(tuned.lr_final)
    assert TrainConfig(lr=3e-3, init_from="m.pt").peak_lr() == 3e-3  # no fine_tune_lr: lr
