"""Coding a latent slice by slice under per-element Gaussians (channel-wise entropy models).

A channel-wise model (Minnen & Singh 2020; TCM) codes y in slices of channels; each slice's
means and scales come from the hyperprior and the slices before it, so the decoder knows a
whole slice's distributions before decoding it. The symbols are ``round(y - mean)`` under a
zero-mean discretised Gaussian of the element's scale: LTCHM's coder
(:mod:`ltchm.entropy.coding`) with one mixture component. Within a slice, elements are coded
in (channel, row, column) order, sorted stably by window width. The string carries a CRC32
of the symbols, which the decoder checks, as LTCHM's y strings do.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ltchm.entropy.coding import ElementDists, YDecoder, YEncoder, width_runs, windows
from ltchm.entropy.latent import YStreamError

__all__ = ["SliceDecoder", "SliceEncoder"]

_HEADER = struct.Struct("<II")  # crc32 of the symbols, length of the ANS words


def _runs(scales: Tensor) -> list[tuple[NDArray[np.int64], ElementDists]]:
    """(element indices, distributions) per window width for zero-mean Gaussians."""
    sc = scales.double().reshape(-1, 1)
    ones, zeros = torch.ones_like(sc), torch.zeros_like(sc)
    lo, width = windows(ones, zeros, sc, "gaussian")
    return list(width_runs(ones, zeros, sc, lo, width.long().cpu().numpy(), "gaussian"))


def _crc(values: NDArray[np.int64], crc: int) -> int:
    return zlib.crc32(np.ascontiguousarray(values, dtype="<i4").tobytes(), crc)


class SliceEncoder:
    """Collects slices in decoding order; :meth:`finish` returns the string."""

    def __init__(self) -> None:
        self._enc = YEncoder()
        self._crc = 0

    def add(self, symbols: Tensor, scales: Tensor) -> None:
        """Symbols (integers, any shape) under zero-mean Gaussians of ``scales`` (same shape)."""
        values = symbols.reshape(-1).long().cpu().numpy()
        for idx, dists in _runs(scales):
            self._enc.add(values[idx], dists)
            self._crc = _crc(values[idx], self._crc)

    def finish(self) -> bytes:
        ans, esc = self._enc.finish()
        return _HEADER.pack(self._crc, len(ans)) + ans + esc


class SliceDecoder:
    """Decodes what :class:`SliceEncoder` wrote, slice by slice, then :meth:`finish`."""

    def __init__(self, string: bytes) -> None:
        if len(string) < _HEADER.size:
            raise YStreamError("y stream truncated")
        self._expected, n_ans = _HEADER.unpack_from(string)
        if _HEADER.size + n_ans > len(string):
            raise YStreamError("y stream truncated")
        body = string[_HEADER.size :]
        self._dec = YDecoder(body[:n_ans], body[n_ans:])
        self._crc = 0

    def decode(self, scales: Tensor) -> Tensor:
        """The symbols of one slice, float64 shaped as ``scales``."""
        values = np.zeros(scales.numel(), dtype=np.int64)
        for idx, dists in _runs(scales):
            values[idx] = self._dec.decode(dists)
            self._crc = _crc(values[idx], self._crc)
        return torch.from_numpy(values).to(scales.device, torch.float64).reshape(scales.shape)

    def finish(self) -> None:
        if self._crc != self._expected:
            raise YStreamError(
                "decoded y does not match the encoder's checksum: the file is corrupt or was "
                "written by a different model"
            )
