"""What every model of the zoo that codes reproducibly shares: its coding tables.

The tables are the entropy bottleneck's CDFs (CompressAI) and the integer weights of the
model's entropy-parameter path (:class:`~ltchm.entropy.detforward.DetProgram`). They are built
once by ``update()`` after training and saved with the weights; a loaded model uses them as
saved, because a rebuild on another machine may differ in the last bit (float32) and the files
of the old tables would no longer decode.
"""

from __future__ import annotations

from typing import Any

from compressai.entropy_models import EntropyBottleneck
from compressai.models import CompressionModel
from compressai.models.utils import update_registered_buffers
from torch import Tensor, nn

from ltchm.entropy.detforward import DetProgram

__all__ = ["ReproducibleCodingModel"]


class ReproducibleCodingModel(CompressionModel):
    """A CompressAI model whose entropy-parameter path runs through a :class:`DetProgram`.

    Subclasses set ``stride`` and implement :meth:`entropy_program`.
    """

    stride: int
    serial_decoding_on_cpu: bool = True
    """On a GPU, run the autoregressive decoder's serial steps on the CPU (same arithmetic,
    same result; :func:`ltchm.entropy.latent.serial_steps_on_cpu` says why)."""

    def __init__(self) -> None:
        super().__init__()
        self._det: DetProgram | None = None
        self._coding_versions: tuple[int, ...] | None = None

    def entropy_program(self) -> DetProgram:
        """A :class:`DetProgram` compiled over the modules that set y's distributions."""
        raise NotImplementedError

    def check_size(self, x: Tensor) -> None:
        """Raise a clear error unless ``x`` is (B, 3, H, W) with H, W multiples of the stride."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
        H, W = x.shape[-2:]
        if H % self.stride or W % self.stride:
            raise ValueError(
                f"{type(self).__name__} needs H and W to be multiples of {self.stride}, got "
                f"{H}x{W}; pad the image (ltchm.codec pads and crops for you)"
            )

    def _versions(self) -> tuple[int, ...]:
        # in-place updates (optimizer steps, load_state_dict) bump a tensor's version
        return tuple(p._version for p in self.parameters())

    def update(self, scale_table: Any = None, force: bool = False, **kwargs: Any) -> bool:
        """Build the coding tables from the weights: the entropy bottleneck's CDFs
        (CompressAI) and the integer weights of the reproducible entropy-parameter path."""
        updated = bool(super().update(scale_table=scale_table, force=force, **kwargs))
        if force or updated or self._det is None:
            self._compile()
            updated = True
        return updated

    def _compile(self) -> None:
        self._det = self.entropy_program()
        self._coding_versions = self._versions()

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any:
        # CompressAI's CompressionModel.load_state_dict tests every key against every module
        # name (quadratic: paid by every scene worker at start, benchmarks/RESULTS.md, "Scene
        # codec"); only the entropy bottleneck's table buffers need resizing before the load.
        prefixes = {k.rpartition(".")[0] for k in state_dict}
        for name, module in self.named_modules():
            if isinstance(module, EntropyBottleneck) and name in prefixes:
                buffers = ["_quantized_cdf", "_offset", "_cdf_length"]
                update_registered_buffers(module, name, buffers, state_dict)
        result = nn.Module.load_state_dict(self, state_dict, strict=strict)
        # Tables saved with the weights are used as saved (see the module's docstring).
        if self.entropy_bottleneck._offset.numel():
            self._compile()
        else:
            self._det, self._coding_versions = None, None
        return result

    def ready(self) -> bool:
        """Whether the coding tables exist (``update()`` was called or they were loaded).

        As in CompressAI, call ``update(force=True)`` after training: tables are never rebuilt
        behind the caller's back.
        """
        return self._det is not None and self.entropy_bottleneck._offset.numel() > 0

    def _require_ready(self) -> DetProgram:
        if not self.ready():
            raise RuntimeError(
                "the model has no coding tables: call model.update(force=True) after "
                "training (checkpoints saved by ltchm.codec carry their tables)"
            )
        if self._coding_versions != self._versions():
            # the integer weights derive from the float ones exactly: safe to refresh
            self._compile()
        assert self._det is not None
        return self._det
