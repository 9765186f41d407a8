"""Entropy coding of y under the K-component mixture, element by element.

Each element i gets its own categorical distribution over a window of integers
[lo_i, hi_i] that covers every component's mean +- ``TAIL`` scales, plus one escape symbol
for values outside. The probabilities are the mixture's bin masses computed with the
reproducible arithmetic of :mod:`ltchm.entropy.detmath` and rounded to integers (so that
even their sums are exact); escaped values go to a separate Exp-Golomb byte stream.

The coder is ``constriction``'s ANS: it takes the rows as one numpy array instead of the
per-element CDF lists CompressAI's rANS needs, whose building dominated the coding time
(benchmarks/RESULTS.md, "Implementation choices"). CompressAI's
``GaussianMixtureConditional`` builds float32 erf CDFs over one global alphabet for batch 1
only, which is neither reproducible across devices nor affordable at scene sizes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import constriction
import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ltchm.entropy.detmath import det_erfc, det_exp, pow2, rint
from ltchm.entropy.mixture import SCALE_BOUND

__all__ = [
    "ElementDists",
    "EscapeReader",
    "EscapeWriter",
    "MixtureRows",
    "YDecoder",
    "YEncoder",
    "mixture_rows",
    "mixture_weights",
    "pow2_ceil",
    "width_runs",
    "windows",
]

TAIL = {"gaussian": 7.0, "laplace": 16.0}  # tail mass outside a component's window < 1e-11
MAX_WIDTH = 4096  # widest window; values beyond it are escaped
PROB_BITS = 40  # bin masses are integers out of 2**40
ESCAPE_MASS = 2**16  # the escape symbol's mass floor (2**-24): escapes stay possible, cheap
CHUNK = 8192  # elements per constriction call when coding many at once
# Table entries (elements x (width + 1)) per computed chunk of rows. Rows are computed chunk by
# chunk, just before they are coded, and never all at once: a trained model can give tens of
# thousands of elements a 4096-wide window, whose rows for one image took over 20 GB. 2**17
# (1 MiB arrays, cache-sized) computes rows fastest (benchmarks/RESULTS.md, "Implementation
# choices").
ROW_ENTRIES = 1 << 17
_MODEL = constriction.stream.model.Categorical(perfect=False)


def mixture_weights(logits: Tensor) -> Tensor:
    """Softmax over the K components (dim 1) with a fixed order of additions."""
    logits = logits.double()
    m = logits.amax(dim=1, keepdim=True)
    e = det_exp(logits - m)
    total = e[:, 0]
    for k in range(1, e.shape[1]):
        total = total + e[:, k]
    return e / total.unsqueeze(1)


def _cdf(family: str, v: Tensor, scale: Tensor) -> Tensor:
    """P(X <= mean + v) for a component of the given scale; ``v`` (float64) is overwritten."""
    if family == "gaussian":
        # in place, the same IEEE operations as 0.5 * erfc(v / scale * -1/sqrt 2): over
        # millions of bins, fresh temporaries cost more than the arithmetic
        return det_erfc(v.div_(scale).mul_(-0.7071067811865476)).mul_(0.5)
    t = det_exp(-(v.abs() / scale))  # Laplace
    return torch.where(v < 0, 0.5 * t, 1.0 - 0.5 * t)


@dataclass
class MixtureRows:
    """Categorical distributions of elements sharing one window width: ``probs[i]`` holds the
    masses of ``lo[i] .. lo[i] + width - 1`` and then the escape symbol."""

    probs: NDArray[np.float64]  # (n, width + 1) float64 holding integers
    lo: NDArray[np.int64]  # (n,)
    width: int


def windows(weights: Tensor, means: Tensor, scales: Tensor, family: str) -> tuple[Tensor, Tensor]:
    """Each element's window: its first value and its width, a power of two >= 2.

    The window covers every component's mean +- TAIL scales; rounding widths up to powers of
    two lets elements be coded in a few groups of equal width without padding narrow
    distributions to the widest one.
    """
    means = means.double()
    scales = scales.double().clamp_min(SCALE_BOUND)
    tail = TAIL[family]
    lo = torch.floor((means - tail * scales).amin(dim=1))
    hi = torch.ceil((means + tail * scales).amax(dim=1))
    natural = hi - lo + 1
    width = pow2_ceil(natural.clamp(2, MAX_WIDTH))
    # an over-wide window keeps MAX_WIDTH bins centred on the heaviest component's mean
    heavy = means.gather(1, weights.argmax(dim=1, keepdim=True)).squeeze(1)
    lo = torch.where(natural > MAX_WIDTH, torch.floor(heavy) - MAX_WIDTH // 2, lo)
    return lo, width


def pow2_ceil(x: Tensor) -> Tensor:
    """The smallest power of two >= x (x >= 1, exact via frexp)."""
    m, e = torch.frexp(x.double())
    return torch.where(m == 0.5, x.double(), pow2(e.double()))


def mixture_rows(
    weights: Tensor, means: Tensor, scales: Tensor, lo: Tensor, width: int, family: str
) -> MixtureRows:
    """Distributions of n elements (parameters (n, K)) over windows ``lo .. lo + width - 1``."""
    means = means.double()
    scales = scales.double().clamp_min(SCALE_BOUND)
    n, K = means.shape
    j = torch.arange(width + 1, dtype=torch.float64, device=means.device)
    edges = lo.double()[:, None] + j[None, :] - 0.5  # bin edges of lo .. lo + width - 1
    mass = torch.zeros(n, width, dtype=torch.float64, device=means.device)
    for k in range(K):
        c = _cdf(family, edges - means[:, k : k + 1], scales[:, k : k + 1])
        mass.add_(torch.sub(c[:, 1:], c[:, :-1]).mul_(weights[:, k : k + 1]))  # + w * (dc)
    ints = rint(mass.mul_(2.0**PROB_BITS))
    escape = (2.0**PROB_BITS - ints.sum(dim=1, keepdim=True)).clamp_min(ESCAPE_MASS)  # exact
    probs = torch.cat([ints, escape], dim=1)
    return MixtureRows(probs.cpu().numpy(), lo.long().cpu().numpy(), width)


@dataclass
class ElementDists:
    """The mixtures of n elements that share one window width, with each element's window;
    their rows (:func:`mixture_rows`) are computed a bounded chunk at a time."""

    weights: Tensor  # (n, K)
    means: Tensor  # (n, K)
    scales: Tensor  # (n, K)
    lo: Tensor  # (n,)
    width: int
    family: str

    def __len__(self) -> int:
        return int(self.lo.shape[0])

    def chunks(self) -> list[slice]:
        """Consecutive slices of at most ``ROW_ENTRIES`` table entries (and ``CHUNK`` elements).

        The coded bytes do not depend on them: rows are per element, and ANS codes the same
        symbols under the same rows in the same order whatever the chunks.
        """
        step = max(1, min(CHUNK, ROW_ENTRIES // (self.width + 1)))
        return [slice(s, s + step) for s in range(0, len(self), step)]

    def rows(self, sl: slice = slice(None)) -> MixtureRows:
        return mixture_rows(
            self.weights[sl], self.means[sl], self.scales[sl], self.lo[sl], self.width, self.family
        )

    def lo_numpy(self) -> NDArray[np.int64]:
        return self.lo.long().cpu().numpy()


def width_runs(
    weights: Tensor,
    means: Tensor,
    scales: Tensor,
    lo: Tensor,
    width: NDArray[np.int64],
    family: str,
    among: NDArray[np.int64] | None = None,
) -> Iterator[tuple[NDArray[np.int64], ElementDists]]:
    """The elements ``among`` (default: all) grouped by window width, widths ascending: each
    group's indices, in their order, and its distributions. Coders and decoders take runs
    in this order."""
    among = np.arange(len(width)) if among is None else among
    for value in np.unique(width[among]):
        idx = among[width[among] == value]
        sel = torch.from_numpy(idx).to(lo.device)
        yield idx, ElementDists(weights[sel], means[sel], scales[sel], lo[sel], int(value), family)


class EscapeWriter:
    """Signed Exp-Golomb codes of the distances by which escaped values overshoot."""

    def __init__(self) -> None:
        self._bits: list[str] = []

    def write(self, overshoot: int) -> None:
        magnitude = abs(overshoot)  # >= 1
        body = format(magnitude, "b")
        self._bits.append("0" * (len(body) - 1) + body + ("1" if overshoot < 0 else "0"))

    def getvalue(self) -> bytes:
        bits = "".join(self._bits)
        bits += "0" * (-len(bits) % 8)
        return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


class EscapeReader:
    def __init__(self, data: bytes) -> None:
        self._bits = "".join(format(b, "08b") for b in data)
        self._pos = 0

    def _bit(self) -> str:
        if self._pos >= len(self._bits):
            raise ValueError("escape stream ended early: the y stream is corrupt")
        bit = self._bits[self._pos]
        self._pos += 1
        return bit

    def read(self) -> int:
        zeros = 0
        while self._bit() == "0":
            zeros += 1
            if zeros > 62:
                raise ValueError("escape code too long: the y stream is corrupt")
        value = 1
        for _ in range(zeros):
            value = (value << 1) | int(self._bit())
        return -value if self._bit() == "1" else value


def _symbols(
    values: NDArray[np.int64], lo: NDArray[np.int64], width: int, esc: EscapeWriter
) -> NDArray[np.int32]:
    rel = values - lo
    inside = (rel >= 0) & (rel < width)
    for i in np.flatnonzero(~inside):
        esc.write(int(rel[i]) if rel[i] < 0 else int(rel[i] - width + 1))
    return np.where(inside, rel, width).astype(np.int32)


class YEncoder:
    """Collects elements in decoding order; ``finish()`` returns (ans words, escapes).

    Only symbols and parameters are kept until ``finish()``, which computes the rows as it
    codes them, a bounded batch at a time: memory stays bounded whatever the windows.
    """

    def __init__(self) -> None:
        self._parts: list[tuple[NDArray[np.int32], ElementDists]] = []
        self._esc = EscapeWriter()

    def add(self, values: NDArray[np.int64], dists: ElementDists) -> None:
        symbols = _symbols(values.astype(np.int64), dists.lo_numpy(), dists.width, self._esc)
        self._parts.append((symbols, dists))

    def finish(self) -> tuple[bytes, bytes]:
        coder = constriction.stream.stack.AnsCoder()
        # ANS is a stack: encode in reverse so that decoding runs forwards.
        end = len(self._parts)
        while end:
            start, entries = end - 1, _entries(self._parts[end - 1][1])
            if entries > ROW_ENTRIES:  # one large part: its rows a chunk at a time
                symbols, dists = self._parts[start]
                for sl in reversed(dists.chunks()):
                    coder.encode_reverse(symbols[sl], _MODEL, dists.rows(sl).probs)
            else:
                # Consecutive small parts (an autoregressive image has hundreds: one per
                # wavefront and width) get their rows from one computation per width.
                while start and entries + _entries(self._parts[start - 1][1]) <= ROW_ENTRIES:
                    start -= 1
                    entries += _entries(self._parts[start][1])
                batch = self._parts[start:end]
                for (symbols, _), probs in zip(
                    reversed(batch), reversed(_batch_rows([d for _, d in batch])), strict=True
                ):
                    coder.encode_reverse(symbols, _MODEL, probs)
            end = start
        return coder.get_compressed().tobytes(), self._esc.getvalue()


def _entries(dists: ElementDists) -> int:
    return len(dists) * (dists.width + 1)


def _batch_rows(batch: list[ElementDists]) -> list[NDArray[np.float64]]:
    """Each part's rows, computed once per width over the parts of that width together."""
    out: list[NDArray[np.float64]] = [np.empty((0, 0))] * len(batch)
    for width in sorted({d.width for d in batch}):
        idx = [i for i, d in enumerate(batch) if d.width == width]
        parts = [batch[i] for i in idx]
        merged = ElementDists(
            torch.cat([d.weights for d in parts]),
            torch.cat([d.means for d in parts]),
            torch.cat([d.scales for d in parts]),
            torch.cat([d.lo for d in parts]),
            width,
            parts[0].family,
        )
        probs = merged.rows().probs
        bounds = np.cumsum([0] + [len(d) for d in parts])
        for i, a, b in zip(idx, bounds[:-1], bounds[1:], strict=True):
            out[i] = probs[a:b]
    return out


class YDecoder:
    def __init__(self, ans: bytes, escapes: bytes) -> None:
        if len(ans) % 4:
            raise ValueError("y stream length is not a multiple of 4 bytes: corrupt file")
        words = np.frombuffer(ans, dtype=np.uint32).copy()
        self._coder = constriction.stream.stack.AnsCoder(words)
        self._esc = EscapeReader(escapes)

    def decode(self, dists: ElementDists) -> NDArray[np.int64]:
        out = np.empty(len(dists), dtype=np.int64)
        for sl in dists.chunks():
            out[sl] = self._coder.decode(_MODEL, dists.rows(sl).probs)
        lo, width = dists.lo_numpy(), dists.width
        values = lo + out
        for i in np.flatnonzero(out == width):
            over = self._esc.read()
            values[i] = lo[i] + over if over < 0 else lo[i] + width - 1 + over
        return values
