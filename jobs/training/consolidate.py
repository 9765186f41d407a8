"""One fp32 state dict from a DeepSpeed checkpoint, whatever its ZeRO stage and precision."""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["consolidate"]

_VET_LOCK = threading.Lock()
# redirect_stdout swaps the process's sys.stdout: rate points finishing in parallel threads
# (ltchm train --lambdas all) interleaved their swaps, and the last restore could leave
# sys.stdout on a discarded buffer (the demo's summary vanished once in the suite)
_QUIET_LOCK = threading.Lock()


def _tag(ckpt_dir: Path) -> str:
    latest = ckpt_dir / "latest"
    if latest.is_file():
        return latest.read_text().strip()
    tags = sorted(p.name for p in ckpt_dir.iterdir() if p.is_dir())
    if not tags:
        raise FileNotFoundError(f"{ckpt_dir}: no DeepSpeed checkpoint in it")
    return tags[-1]


def _vet(tag_dir: Path) -> None:
    """Prove every file of the checkpoint holds only tensors, plain values and DeepSpeed's
    own state classes before DeepSpeed's ``zero_to_fp32`` unpickles them without
    restriction (it passes ``weights_only=False``): checkpoints live on shared storage, and
    a replaced file must not be able to run code here."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    # safe_globals edits one process-wide list and restores it on exit: rate points
    # consolidate in parallel threads, so one thread's exit must not cut another's load short
    with _VET_LOCK, torch.serialization.safe_globals([LossScaler, ZeroStageEnum, fragment_address]):
        for path in sorted(tag_dir.glob("*.pt")):
            try:
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:  # pickle.UnpicklingError and what torch raises for it
                raise ValueError(
                    f"{path}: refused: it holds more than tensors and DeepSpeed's state "
                    f"({str(exc).splitlines()[0][:200]})"
                ) from None


def consolidate(ckpt_dir: str | Path) -> dict[str, Tensor]:
    """The model's full state dict in fp32.

    DeepSpeed's ``zero_to_fp32`` rebuilds every parameter its optimiser holds from the fp32
    master copies (sharded under ZeRO; an fp32 run at stage 0 saves its weights whole);
    parameters it does not hold (the entropy bottleneck's quantiles, trained by their own
    optimiser) and buffers come from the saved module state.
    """
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    ckpt_dir = Path(ckpt_dir)
    tag = _tag(ckpt_dir)
    module_file = ckpt_dir / tag / "mp_rank_00_model_states.pt"
    _vet(ckpt_dir / tag)
    saved = torch.load(module_file, map_location="cpu", weights_only=True)
    state = dict(saved.get("module") or {})
    # ZeRO stage 0 (configs/cpu.yaml) writes no optimiser shards: its module state is the fp32
    # weights (bf16 too, being autocast over fp32 weights); stages >= 1 keep them in shards
    if any((ckpt_dir / tag).glob("*zero_pp_rank_*_optim_states.pt")):
        # zero_to_fp32 prints its progress ("Processing zero checkpoint ..."): not the user's
        with _QUIET_LOCK, contextlib.redirect_stdout(io.StringIO()):
            state.update(get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag))
    if not state:
        raise ValueError(f"{ckpt_dir}: the checkpoint holds no weights")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
