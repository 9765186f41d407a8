"""The generated DeepSpeed config: precision and batch split."""

from __future__ import annotations

import pytest

from jobs.training.dsconfig import deepspeed_config, precision
from ltchm.config import config_from_dict


def _cfg(**deepspeed: object):  # type: ignore[no-untyped-def]
    return config_from_dict({"deepspeed": deepspeed, "train": {"batch_size": 8}})


def test_auto_is_bf16_on_gpus_and_fp32_on_cpus() -> None:
    assert precision(_cfg(), use_gpu=True) == "bf16"
    assert precision(_cfg(), use_gpu=False) == "fp32"
    assert precision(_cfg(precision="bf16"), use_gpu=False) == "bf16"


@pytest.mark.parametrize("use_gpu", [True, False])
def test_bf16_is_autocast_over_float32_weights(use_gpu: bool) -> None:
    ds = deepspeed_config(_cfg(precision="bf16"), 2, use_gpu)
    auto = ds["torch_autocast"]
    assert auto["enabled"] is True and auto["dtype"] == "bfloat16"
    assert auto["lower_precision_safe_modules"] == []  # gradients all-reduced in float32
    # DeepSpeed's own bf16 mode would cast the weights (GDN and BatchNorm do not survive it)
    assert ds["bf16"]["enabled"] is False and ds["fp16"]["enabled"] is False
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["train_batch_size"] == 8


def test_fp32_has_no_autocast() -> None:
    ds = deepspeed_config(_cfg(precision="fp32"), 1, True)
    assert ds["torch_autocast"]["enabled"] is False and ds["bf16"]["enabled"] is False


def test_an_uneven_batch_split_is_refused() -> None:
    with pytest.raises(ValueError, match="not divisible by 3 workers"):
        deepspeed_config(_cfg(), 3, False)
