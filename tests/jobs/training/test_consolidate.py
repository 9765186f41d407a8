"""A DeepSpeed checkpoint to one fp32 state dict, and never unpickling code from storage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jobs.training.consolidate import consolidate
from ltchm.paths import REPO_ROOT
from tests.processes import free_port

# a real DeepSpeed engine (ZeRO stage argv[3], CPU, gloo, one rank) saves a checkpoint
_SAVE = """
import sys, torch, deepspeed
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
cfg = {"train_batch_size": 1, "zero_optimization": {"stage": int(sys.argv[3])},
       "optimizer": {"type": "Adam", "params": {"lr": 1e-3, "torch_adam": True}}}
engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=cfg)
loss = engine(torch.randn(1, 4)).sum()
engine.backward(loss)
engine.step()
engine.save_checkpoint(sys.argv[1], tag="step00000001")
torch.save({k: v.detach().clone() for k, v in engine.module.state_dict().items()}, sys.argv[2])
"""


@pytest.fixture(scope="module", params=[0, 1], ids=["zero0", "zero1"])
def checkpoint(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ds")
    env = {
        **os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
        "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _SAVE, str(root / "ckpt"), str(root / "expected.pt"),
         str(request.param)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "ckpt", root / "expected.pt"


def test_the_fp32_weights_come_back(checkpoint) -> None:
    ckpt, expected = checkpoint
    state = consolidate(ckpt)
    want = torch.load(expected, weights_only=True)
    assert state.keys() == want.keys()
    assert all(torch.equal(state[k], want[k].float()) for k in want)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch ran-code",))


@pytest.mark.parametrize(
    "file", ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"]
)
def test_a_file_that_would_run_code_is_refused(checkpoint, tmp_path, monkeypatch, file) -> None:
    ckpt, _ = checkpoint
    copy = tmp_path / "ckpt"
    shutil.copytree(ckpt, copy)
    torch.save({"state": _RunsCode()}, copy / "step00000001" / file)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="refused: it holds more than tensors"):
        consolidate(copy)
    assert not (tmp_path / "ran-code").exists()
