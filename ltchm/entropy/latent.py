"""Coding y_hat given the hyperprior features, in the two context modes.

Elements are coded in *groups* whose distributions the decoder can compute before decoding
any of them:

* ``autoregressive``: a group is a wavefront of positions ``3h + w = t``. The 5x5 causal
  mask makes a position depend on its left neighbours and on the rows above up to two
  columns to the right, all of which lie on earlier wavefronts, so decoding wavefront by
  wavefront is the paper's serial context model with the same conditional distributions
  (and the same rate) as raster order, in 3H + W steps instead of H * W.
* ``checkerboard``: two groups, the anchors (h + w even) from the hyperprior alone, then
  the rest from the anchors' context (He et al. 2021).

Within a group, positions are in raster order, channels within a position, and elements
are then sorted (stably) by window width so that equal widths are coded together.
Parameters come from :class:`~ltchm.entropy.detforward.DetProgram`, so the decoder's
per-group evaluation equals the encoder's whole-map evaluation bit for bit. Every y string
carries a CRC32 of the symbols, which the decoder checks: a corrupted stream or a decoder
that is not the encoder's is an error, never a wrong image.
"""

from __future__ import annotations

import copy
import itertools
import struct
import weakref
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from ltchm.entropy.coding import (
    ElementDists,
    YDecoder,
    YEncoder,
    mixture_weights,
    width_runs,
    windows,
)
from ltchm.entropy.mixture import split_params

if TYPE_CHECKING:
    from ltchm.entropy.detforward import DetProgram
    from ltchm.models.ltchm import LTCHM

__all__ = ["YStreamError", "decode_y", "encode_y", "groups", "serial_steps_on_cpu"]

_HEADER = struct.Struct("<II")  # crc32 of the symbols, length of the ANS words


class YStreamError(ValueError):
    """The y stream does not decode to what was encoded."""


def groups(mode: str, H: int, W: int) -> list[NDArray[np.int64]]:
    """Coding groups: arrays of (h, w) positions, each group decodable in parallel."""
    hs, ws = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    pos = np.stack([hs.reshape(-1), ws.reshape(-1)], axis=1)  # raster order
    if mode == "checkerboard":
        anchor = (pos[:, 0] + pos[:, 1]) % 2 == 0
        return [pos[anchor], pos[~anchor]]
    wave = 3 * pos[:, 0] + pos[:, 1]
    order = np.argsort(wave, kind="stable")
    bounds = np.flatnonzero(np.diff(wave[order])) + 1
    return np.split(pos[order], bounds)


def _flat(model: LTCHM, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """params (P, 3KN, 1, 1) -> weights, means, scales, each (P * N, K), channels minor."""
    p = split_params(params, model.K)  # each (P, K, N, 1, 1)
    w, mu, sc = (t[..., 0, 0].permute(0, 2, 1).reshape(-1, model.K) for t in p)
    return mixture_weights(w), mu, sc


def _runs(model: LTCHM, params: Tensor) -> Iterator[tuple[NDArray[np.int64], ElementDists]]:
    """(element indices, distributions) per window width, widths ascending."""
    w, mu, sc = _flat(model, params)
    lo, width = windows(w, mu, sc, model.mixture)
    return width_runs(w, mu, sc, lo, width.long().cpu().numpy(), model.mixture)


def _at(t: Tensor, pos: NDArray[np.int64]) -> Tensor:
    """(1, C, H, W) -> (P, C, 1, 1) at the given positions."""
    hh = torch.from_numpy(pos[:, 0]).to(t.device)
    ww = torch.from_numpy(pos[:, 1]).to(t.device)
    return t[0][:, hh, ww].transpose(0, 1)[..., None, None]


def _params(prog: DetProgram, model: LTCHM, ctx: Tensor, hyper: Tensor) -> Tensor:
    return prog.run(model.entropy_parameters, torch.cat([ctx, hyper], dim=1))


def _crc(values: NDArray[np.int64]) -> int:
    return zlib.crc32(np.ascontiguousarray(values, dtype="<i4").tobytes())


def encode_y(model: LTCHM, prog: DetProgram, y_hat: Tensor, hyper: Tensor) -> bytes:
    """The y string of one image: y_hat (1, N, H, W) integers, hyper (1, 2N, H, W).

    The encoder knows all of y_hat, so it evaluates the entropy parameters of every position
    at once (position-local and exact: equal to the decoder's group-by-group evaluation), then
    emits the elements in the decoder's order.
    """
    H, W = y_hat.shape[-2:]
    ctx = prog.run(model.context_model, y_hat)  # whole map; zero at checkerboard anchors
    full = _params(prog, model, ctx, hyper)
    sources = [full]
    if model.context == "checkerboard":  # the anchors are coded without context
        sources.append(_params(prog, model, torch.zeros_like(ctx), hyper))
    # every element in coding-group order, with its parameters and value
    parts, values, bounds = [], [], [0]
    for i, pos in enumerate(groups(model.context, H, W)):
        src = sources[1] if model.context == "checkerboard" and i == 0 else sources[0]
        parts.append(_at(src, pos))
        values.append(_at(y_hat, pos)[..., 0, 0].reshape(-1).long().cpu().numpy())
        bounds.append(bounds[-1] + len(values[-1]))
    w, mu, sc = _flat(model, torch.cat(parts))
    lo, width = windows(w, mu, sc, model.mixture)
    width_np = width.long().cpu().numpy()
    values_all = np.concatenate(values)
    enc, coded = YEncoder(), []
    for start, stop in itertools.pairwise(bounds):
        group = np.arange(start, stop)
        for idx, dists in width_runs(w, mu, sc, lo, width_np, model.mixture, group):
            enc.add(values_all[idx], dists)
            coded.append(values_all[idx])
    ans, esc = enc.finish()
    symbols = np.concatenate(coded) if coded else np.zeros(0, np.int64)
    return _HEADER.pack(_crc(symbols), len(ans)) + ans + esc


class _CPUPath(nn.Module):
    """A CPU copy of what decoding y reads of a model: its sizes and its context path."""

    def __init__(self, model: LTCHM) -> None:
        super().__init__()
        self.N, self.K, self.mixture, self.context = model.N, model.K, model.mixture, model.context
        self.context_model = copy.deepcopy(model.context_model).cpu()
        self.entropy_parameters = copy.deepcopy(model.entropy_parameters).cpu()


# one CPU copy per compiled program: a model compiles a new program whenever its weights change
_cpu_paths: weakref.WeakKeyDictionary[DetProgram, _CPUPath] = weakref.WeakKeyDictionary()


def serial_steps_on_cpu(model: LTCHM, hyper: Tensor) -> bool:
    """Whether :func:`decode_y` runs the serial wavefront steps on the CPU.

    The autoregressive decoder takes 3H + W serial steps of small operations, each with a
    round trip to the host for the entropy decoder: on a GPU every step pays kernel launches
    and synchronisations (the first GPU run decoded 256² in 578 ms, 78 ms with checkerboard's
    two steps), while the arithmetic is the same on any device. Set
    ``model.serial_decoding_on_cpu = False`` to keep them on the model's device.
    """
    return (
        model.context == "autoregressive"
        and hyper.device.type != "cpu"
        and model.serial_decoding_on_cpu
    )


def decode_y(model: LTCHM, prog: DetProgram, string: bytes, hyper: Tensor) -> Tensor:
    """y_hat (1, N, H, W) float64 from one y string and hyper (1, 2N, H, W), on hyper's
    device (the serial steps on the CPU where :func:`serial_steps_on_cpu` says so)."""
    if serial_steps_on_cpu(model, hyper):
        if prog not in _cpu_paths:
            _cpu_paths[prog] = _CPUPath(model)
        path: LTCHM = _cpu_paths[prog]  # type: ignore[assignment]  # what decoding reads
        return _decode_y(path, prog, string, hyper.cpu()).to(hyper.device)
    return _decode_y(model, prog, string, hyper)


def _decode_y(model: LTCHM, prog: DetProgram, string: bytes, hyper: Tensor) -> Tensor:
    if len(string) < _HEADER.size:
        raise YStreamError("y stream truncated")
    crc, n_ans = _HEADER.unpack_from(string)
    if _HEADER.size + n_ans > len(string):
        raise YStreamError("y stream truncated")
    dec = YDecoder(string[_HEADER.size : _HEADER.size + n_ans], string[_HEADER.size + n_ans :])
    N = model.N
    H, W = hyper.shape[-2:]
    conv = model.context_model.conv
    k = conv.kernel_size[0]
    p = k // 2
    y_pad = torch.zeros(1, N, H + 2 * p, W + 2 * p, dtype=torch.float64, device=hyper.device)
    coded = []
    for i, pos in enumerate(groups(model.context, H, W)):
        if model.context == "checkerboard" and i == 0:
            ctx = torch.zeros(len(pos), 2 * N, 1, 1, dtype=torch.float64, device=hyper.device)
        else:
            hood = torch.stack([y_pad[0, :, h : h + k, w : w + k] for h, w in pos])
            ctx = prog.masked_conv_valid(conv, hood)
        params = _params(prog, model, ctx, _at(hyper, pos))
        values = np.zeros(len(pos) * N, dtype=np.int64)
        for idx, dists in _runs(model, params):
            values[idx] = dec.decode(dists)
            coded.append(values[idx])
        hh = torch.from_numpy(pos[:, 0] + p).to(y_pad.device)
        ww = torch.from_numpy(pos[:, 1] + p).to(y_pad.device)
        y_pad[0][:, hh, ww] = torch.from_numpy(values.reshape(len(pos), N).T).to(y_pad)
    symbols = np.concatenate(coded) if coded else np.zeros(0, np.int64)
    if _crc(symbols) != crc:
        raise YStreamError(
            "decoded y does not match the encoder's checksum: the file is corrupt or was "
            "written by a different model"
        )
    return y_pad[:, :, p : p + H, p : p + W]
