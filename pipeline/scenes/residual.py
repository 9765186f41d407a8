"""The error-bounded layer: the residual of the learned decode, quantised and coded losslessly.

After the learned layer a band of a tile may carry its residual against a *prediction* ``p``
that the decoder rebuilds bit for bit (:func:`predict`). The residual is quantised with a
step of ``2E + 1`` (integer data) or ``2E`` (float data, ``E > 0``), so that every valid pixel
decodes within ``E`` of its source value, in native units; ``E = 0`` is lossless (float data
then code the difference of the values' ordered integer forms, bit-exact).

The prediction. The synthesis transform runs in floating point, whose results depend on the
order of additions (thread count, batch composition, device): measured here, one thread
against two differ by up to 1.2e-7 in [0, 1]. So the prediction is the synthesis evaluated
in float64 (differences of order 1e-16) and snapped to a grid of ``2**-SNAP_BITS`` of the
unit range before it is mapped to native units: two evaluations snap to different points only
if one lands within ~1e-16 of a half-grid point, about 1e-10 per pixel. Each coded band
carries the CRC-32 of its reconstruction: if a decoder's prediction ever differs, decoding
stops with an error instead of returning a pixel outside the bound.

The coder. Quantised residuals ``q`` are zigzag-mapped to ``v >= 0``; ``v < 32`` is its own
symbol, larger values a (bit length, next bit) symbol plus raw low bits. The symbols are
coded with ``constriction``'s ANS (the coder of the y streams) under one static histogram
per *context*, the local activity of the prediction (the decoder knows it before decoding):
residuals are larger where the learned decode is busy. Histograms are stored in the band's
record; pixels that cannot be represented (a float reconstruction rounded off the bound, a
value that would land on the nodata value) are stored raw as exceptions.
"""

from __future__ import annotations

import struct
import zlib

import constriction
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "SNAP_BITS",
    "ResidualError",
    "decode_band",
    "derived_error",
    "encode_band",
    "predict",
]

SNAP_BITS = 20
EXACT = 32  # zigzag values below this are symbols of their own
ALPHABET = EXACT + 2 * 59  # + (bit length 6..64) x (next bit)
_THRESHOLDS = np.array([0.5, 2.0, 8.0, 32.0])  # activity / step -> context
_HEAD = struct.Struct("<BddIIIII")  # mode, E, step, crc, hist, ans, raw, exceptions lengths
_INT, _FLOAT_ORDERED, _FLOAT_STEP = 0, 1, 2
_MAX_HIST = 1 << 16


class ResidualError(ValueError):
    """A residual record that is corrupt or does not reproduce the encoder's values."""


def predict(unit: NDArray[np.float64], lo: float, hi: float, dtype: str) -> NDArray[np.generic]:
    """The prediction of a band in its dtype from the float64 synthesis ``unit`` in [0, 1].

    Snapped to the ``2**-SNAP_BITS`` grid first (see the module docstring), then mapped with
    float64 arithmetic, which is correctly rounded everywhere.
    """
    scale = float(1 << SNAP_BITS)
    snapped = np.rint(np.clip(np.nan_to_num(unit), 0.0, 1.0) * scale) / scale
    native = float(lo) + snapped * (float(hi) - float(lo))
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return native.astype(dt)
    info = np.iinfo(dt)
    return np.clip(np.rint(native), info.min, info.max).astype(dt)


def derived_error(peak: float, floor_db: float, dtype: str) -> float:
    """The largest ``E`` whose worst case (every pixel off by E) still meets ``floor_db``."""
    e = peak / 10.0 ** (floor_db / 20.0)
    return float(np.floor(e)) if np.dtype(dtype).kind != "f" else e


# -- ordered integers of floats: monotonic, so near values have near integers ----------------
def _ordered(x: NDArray[np.generic]) -> NDArray[np.int64]:
    if x.dtype == np.float32:
        i = x.view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF) - 1, i)
    i = x.view(np.int64)
    return np.where(i < 0, -(i & np.int64(0x7FFFFFFFFFFFFFFF)) - 1, i)


def _from_ordered(o: NDArray[np.int64], dtype: np.dtype) -> NDArray[np.generic]:
    if dtype == np.float32:
        i = np.where(o < 0, (-(o + 1)) | np.int64(-(1 << 31)), o).astype(np.int32)
        return i.view(np.float32)
    with np.errstate(over="ignore"):
        i = np.where(o < 0, (-(o + 1)) | np.int64(-(1 << 63)), o)
    return i.view(np.float64)


# -- the symbol coder ---------------------------------------------------------------------------
def _bit_length(v: NDArray[np.uint64]) -> NDArray[np.int64]:
    n = np.zeros(v.shape, dtype=np.int64)
    for k in range(64):
        n += (v >> np.uint64(k)) > 0
    return n


def _contexts(u: NDArray[np.float64]) -> NDArray[np.int64]:
    """(h, w) prediction in coding units -> context per pixel (its local activity)."""
    a = np.zeros(u.shape, dtype=np.float64)
    a[:, 1:] += np.abs(np.diff(u, axis=1))
    a[1:, :] += np.abs(np.diff(u, axis=0))
    return np.searchsorted(_THRESHOLDS, a, side="right").astype(np.int64)


def _encode_symbols(q: NDArray[np.int64], ctx: NDArray[np.int64]) -> tuple[bytes, bytes, bytes]:
    """(histograms, ANS words, raw bits) of ``q`` under contexts ``ctx`` (same order)."""
    v = ((q << 1) ^ (q >> 63)).view(np.uint64)  # zigzag
    sym = np.minimum(v, EXACT).astype(np.int64)
    big = np.flatnonzero(v >= EXACT)
    vb = v[big]
    length = _bit_length(vb)
    nxt = ((vb >> (length - 2).astype(np.uint64)) & np.uint64(1)).astype(np.int64)
    sym[big] = EXACT + 2 * (length - 6) + nxt
    nbits = length - 2
    raw = vb & ((np.uint64(1) << nbits.astype(np.uint64)) - np.uint64(1))
    hist = bytearray()
    models = []
    n_ctx = len(_THRESHOLDS) + 1
    for c in range(n_ctx):
        s = sym[ctx == c]
        # constriction's categorical needs two symbols at least
        counts = np.bincount(s, minlength=2) if s.size else np.zeros(2, np.int64)
        top = max(1, int(np.flatnonzero(counts).max()) if s.size else 1)
        h = counts[: top + 1]
        h = np.maximum(np.ceil(h * (_MAX_HIST - 1) / max(1, int(h.max()))), 1).astype(np.int64)
        hist += struct.pack("<B", top) + struct.pack(f"<{top + 1}H", *h.tolist())
        models.append((s, h))
    coder = constriction.stream.stack.AnsCoder()
    for s, h in reversed(models):  # ANS is a stack: the decoder reads contexts forwards
        if s.size:
            model = constriction.stream.model.Categorical(h / h.sum(), perfect=False)
            coder.encode_reverse(s.astype(np.int32), model)
    total = int(nbits.sum())
    if total:
        owner = np.repeat(np.arange(len(nbits)), nbits)
        pos = np.arange(total) - np.repeat(np.cumsum(nbits) - nbits, nbits)
        shift = (nbits[owner] - 1 - pos).astype(np.uint64)
        bits = ((raw[owner] >> shift) & np.uint64(1)).astype(np.uint8)
        raw_bytes = np.packbits(bits).tobytes()
    else:
        raw_bytes = b""
    return zlib.compress(bytes(hist), 9), coder.get_compressed().tobytes(), raw_bytes


def _decode_symbols(
    hist_z: bytes, ans: bytes, raw_bytes: bytes, ctx: NDArray[np.int64]
) -> NDArray[np.int64]:
    n_ctx = len(_THRESHOLDS) + 1
    hist = _inflate(hist_z, n_ctx * (1 + 2 * ALPHABET))
    if len(ans) % 4:
        raise ResidualError("residual ANS stream is not whole 32-bit words: corrupted")
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(ans, dtype=np.uint32).copy())
    sym = np.empty(ctx.shape, dtype=np.int64)
    pos = 0
    for c in range(n_ctx):
        if pos >= len(hist):
            raise ResidualError("residual histograms truncated: corrupted")
        top = hist[pos]
        pos += 1
        if not 1 <= top < ALPHABET or pos + 2 * (top + 1) > len(hist):
            raise ResidualError("residual histogram out of range: corrupted")
        h = np.frombuffer(hist, dtype="<u2", count=top + 1, offset=pos).astype(np.float64)
        pos += 2 * (top + 1)
        where = np.flatnonzero(ctx == c)
        if where.size:
            if not h.sum():
                raise ResidualError("empty residual histogram: corrupted")
            model = constriction.stream.model.Categorical(h / h.sum(), perfect=False)
            sym[where] = coder.decode(model, int(where.size))
    v = sym.astype(np.uint64)
    big = np.flatnonzero(sym >= EXACT)
    if big.size:
        s = sym[big] - EXACT
        length = s // 2 + 6
        nbits = length - 2
        total = int(nbits.sum())
        bits = np.unpackbits(np.frombuffer(raw_bytes, dtype=np.uint8))
        if bits.size < total or bits.size - total >= 8:
            raise ResidualError("residual raw bits do not match their symbols: corrupted")
        bits = bits[:total].astype(np.uint64)
        owner = np.repeat(np.arange(len(nbits)), nbits)
        pos_in = np.arange(total) - np.repeat(np.cumsum(nbits) - nbits, nbits)
        contrib = bits << (nbits[owner] - 1 - pos_in).astype(np.uint64)
        low = np.add.reduceat(contrib, np.cumsum(nbits) - nbits)
        lead = (np.uint64(2) | (s % 2).astype(np.uint64)) << nbits.astype(np.uint64)
        v[big] = lead | low
    elif raw_bytes:
        raise ResidualError("residual raw bits without symbols that use them: corrupted")
    return (v >> np.uint64(1)).view(np.int64) ^ -(v & np.uint64(1)).view(np.int64)


def _inflate(data: bytes, limit: int) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ResidualError(f"residual table unreadable ({exc}): corrupted") from None
    if len(out) > limit or d.unconsumed_tail:
        raise ResidualError("residual table too large: corrupted")
    return out


# -- bands ------------------------------------------------------------------------------------
def _plan(p: NDArray[np.generic], error: float) -> tuple[int, float]:
    """(mode, step) for a band of ``p``'s dtype coded within ``error``."""
    if p.dtype.kind != "f":
        return _INT, float(2 * int(np.floor(error)) + 1)
    if error == 0:
        return _FLOAT_ORDERED, 1.0
    return _FLOAT_STEP, 2.0 * error


def _coding_units(p: NDArray[np.generic], mode: int, step: float) -> NDArray[np.float64]:
    if mode == _FLOAT_ORDERED:
        return _ordered(p).astype(np.float64)
    return p.astype(np.float64) / step


def _reconstruct(
    p: NDArray[np.generic], q: NDArray[np.int64], mode: int, step: float
) -> NDArray[np.generic]:
    if mode == _INT:
        info = np.iinfo(p.dtype.name)
        y = p.astype(np.int64) + q * int(step)
        return np.clip(y, info.min, info.max).astype(p.dtype)
    if mode == _FLOAT_ORDERED:
        with np.errstate(over="ignore"):
            return _from_ordered(_ordered(p) + q, p.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        return (p.astype(np.float64) + q.astype(np.float64) * step).astype(p.dtype)


def encode_band(
    x: NDArray[np.generic],
    valid: NDArray[np.bool_],
    p: NDArray[np.generic],
    error: float,
    nodata: float | None = None,
) -> tuple[bytes, NDArray[np.generic]]:
    """The residual record of one band of a tile region, and what the decoder will rebuild.

    Args:
        x: (h, w) source values; valid: (h, w) which to code; p: (h, w) the prediction
            (:func:`predict`), all of the band's dtype.
        error: the bound E in native units (integer data use its integer part).
        nodata: the band's nodata value: no valid pixel may decode onto it.

    Returns:
        (record, (h, w) reconstruction: within ``error`` of ``x`` at every valid pixel).
    """
    if error < 0 or not np.isfinite(error):
        raise ValueError(f"the error bound must be a finite number >= 0, got {error}")
    mode, step = _plan(p, error)
    xs, ps = x[valid], p[valid]
    if mode == _INT:
        r = xs.astype(np.int64) - ps.astype(np.int64)
        e = int(np.floor(error))
        q = np.floor_divide(r + e, 2 * e + 1)
    elif mode == _FLOAT_ORDERED:
        with np.errstate(over="ignore"):
            q = _ordered(xs) - _ordered(ps)  # wraps for float64 extremes: inverted exactly
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            d = (xs.astype(np.float64) - ps.astype(np.float64)) / step
        q = np.rint(np.clip(np.nan_to_num(d), -(2.0**52), 2.0**52)).astype(np.int64)
    y = _reconstruct(ps, q, mode, step)
    with np.errstate(invalid="ignore", over="ignore"):
        off = ~(np.abs(y.astype(np.float64) - xs.astype(np.float64)) <= error)
    if mode == _FLOAT_ORDERED:
        off = _ordered(y) != _ordered(xs)
    if nodata is not None and not np.isnan(nodata):
        off |= (y == nodata) & (xs != nodata)
    exc_idx = np.flatnonzero(off).astype(np.uint32)
    q[exc_idx] = 0
    y[exc_idx] = xs[exc_idx]
    ctx = _contexts(_coding_units(p, mode, step))[valid]
    hist, ans, raw = _encode_symbols(q, ctx)
    exc = b""
    if exc_idx.size:
        deltas = np.diff(exc_idx, prepend=np.uint32(0)).astype("<u4")
        raw_values = xs[exc_idx].astype(x.dtype.newbyteorder("<")).tobytes()
        exc = zlib.compress(deltas.tobytes() + raw_values)
    crc = zlib.crc32(y.astype(y.dtype.newbyteorder("<")).tobytes())
    head = _HEAD.pack(mode, error, step, crc, len(hist), len(ans), len(raw), len(exc))
    out = np.zeros_like(x)
    out[valid] = y
    return head + hist + ans + raw + exc, out


def decode_band(
    record: bytes, valid: NDArray[np.bool_], p: NDArray[np.generic]
) -> tuple[NDArray[np.generic], float]:
    """(the (h, w) reconstruction, its bound E); :class:`ResidualError` if the record is
    corrupt or the reconstruction is not the encoder's (its CRC-32 differs)."""
    if len(record) < _HEAD.size:
        raise ResidualError("residual record truncated: corrupted")
    mode, error, step, crc, n_hist, n_ans, n_raw, n_exc = _HEAD.unpack_from(record)
    if _HEAD.size + n_hist + n_ans + n_raw + n_exc != len(record):
        raise ResidualError("residual record lengths disagree with its size: corrupted")
    if mode != _plan(p, error)[0] or step != _plan(p, error)[1]:
        raise ResidualError("residual record's mode does not fit the band's type: corrupted")
    pos = _HEAD.size
    parts = []
    for n in (n_hist, n_ans, n_raw, n_exc):
        parts.append(record[pos : pos + n])
        pos += n
    hist, ans, raw, exc = parts
    ps = p[valid]
    ctx = _contexts(_coding_units(p, mode, step))[valid]
    q = _decode_symbols(hist, ans, raw, ctx)
    y = _reconstruct(ps, q, mode, step)
    if exc:
        item = p.dtype.itemsize
        blob = _inflate(exc, ps.size * (4 + item))
        if len(blob) % (4 + item):
            raise ResidualError("residual exceptions of the wrong size: corrupted")
        k = len(blob) // (4 + item)
        idx = np.cumsum(np.frombuffer(blob, dtype="<u4", count=k).astype(np.int64))
        if k and idx[-1] >= ps.size:
            raise ResidualError("residual exception outside the band: corrupted")
        y[idx] = np.frombuffer(blob, dtype=p.dtype.newbyteorder("<"), offset=4 * k)
    if zlib.crc32(y.astype(y.dtype.newbyteorder("<")).tobytes()) != crc:
        raise ResidualError(
            "the error-bounded layer does not reproduce the encoder's values (corrupted data, "
            "or a learned decode that differs from the encoder's): refusing pixels whose "
            "bound cannot be guaranteed"
        )
    out = np.zeros(p.shape, dtype=p.dtype)
    out[valid] = y
    return out, error
