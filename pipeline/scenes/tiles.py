"""One tile of a scene through the model: band groups in, a :class:`TileRecord` out, and back.

The tile's band groups are coded as one batch of 3-channel images, padded to the model's
multiple of 64 by edge replication as :class:`ltchm.codec.ImageCodec` pads whole images.
Decoding is deterministic (integer entropy-parameter path), so a tile decodes to the same
bits in any process, batch or window.
"""

from __future__ import annotations

import copy
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ltchm.codec.checkpoint import prepare_for_coding
from ltchm.codec.identity import ModelIdentity, identity_of
from ltchm.codec.image import ModelMismatchError, pad_to_stride
from pipeline.scenes.bands import channels_of, fill_invalid, from_unit, to_unit
from pipeline.scenes.container import ModelInfo, SceneHeader, TileRecord
from pipeline.scenes.grid import SceneGrid
from pipeline.scenes.residual import decode_band, derived_error, encode_band, predict
from pipeline.scenes.source import SourceTile

__all__ = ["DecodedTile", "TileCoder", "model_info"]

_ZLIB_LEVEL = 6


@dataclass
class DecodedTile:
    """``values``: (coded bands, h, w) float32 in native units; ``present``: per coded band,
    whether any group coded it here; ``planes``/``alpha``: the lossless data of the region
    the tile owns; ``exact``: coded band -> its error-bounded values over the owned region,
    in the scene's dtype (those pixels are not blended)."""

    values: np.ndarray
    present: np.ndarray
    planes: np.ndarray | None
    alpha: np.ndarray | None
    exact: dict[int, np.ndarray] = field(default_factory=dict)


def model_info(
    identity: ModelIdentity, *, context: str | None = None, source: str | None = None
) -> ModelInfo:
    lmbda = None if math.isnan(identity.lmbda) else identity.lmbda
    return ModelInfo(
        name=identity.name,
        lmbda=lmbda,
        config_hash=identity.config_hash,
        weights_hash=identity.weights_hash,
        context=context,
        source=source,
    )


def check_model(header: SceneHeader, identity: ModelIdentity) -> None:
    m = header.model
    want = ModelIdentity(m.name, float("nan"), m.config_hash, m.weights_hash)
    if not want.matches(identity):
        raise ModelMismatchError(
            f"this scene was encoded with {want.short()}, not with the model given, "
            f"{identity.short()}"
        )


def scene_mapping(header: SceneHeader) -> tuple[list[float], list[float]]:
    n = len(header.coded_bands)
    if header.mapping.mode == "identity":
        return [0.0] * n, [255.0] * n
    return header.mapping.lo, header.mapping.hi


class TileCoder:
    """Encode and decode the tiles of scenes with one model."""

    def __init__(self, model: nn.Module, device: Any = None) -> None:
        p = next(model.parameters(), None)
        self.device = (
            torch.device(device)
            if device is not None
            else (p.device if p is not None else torch.device("cpu"))
        )
        self.model = prepare_for_coding(model.to(self.device))
        self.stride = getattr(model, "stride", 64)
        self.identity = identity_of(self.model)
        self._g_s64: nn.Module | None = None

    # -- encoding --------------------------------------------------------------------------
    def encode(self, header: SceneHeader, grid: SceneGrid, index: int, src: SourceTile) -> bytes:
        from pipeline.scenes.container import pack_tile

        return pack_tile(self.encode_record(header, grid, index, src))

    def encode_record(
        self, header: SceneHeader, grid: SceneGrid, index: int, src: SourceTile
    ) -> TileRecord:
        bands = header.coded_bands
        tile_mapping = None
        if header.mapping.mode == "tile-linear":
            lo, hi = _valid_range(src.data, src.valid)
            tile_mapping = list(zip(lo, hi, strict=True))
        else:
            lo, hi = scene_mapping(header)
        v = fill_invalid(to_unit(src.data, lo, hi), src.valid)
        band_ok = src.valid.reshape(len(bands), -1).any(axis=1)
        coded, batch = [], []
        for g, group in enumerate(header.groups):
            chans = [bands.index(b) for b in channels_of(group)]
            if band_ok[chans].any():
                coded.append(g)
                batch.append(v[chans])
        streams: list[list[bytes]] = [[] for _ in header.groups]
        shape = (0, 0)
        out: dict[str, Any] = {}
        if batch:
            x = torch.from_numpy(np.stack(batch)).to(self.device)
            out = self.model.compress(self.pad(x))
            shape = (int(out["shape"][0]), int(out["shape"][1]))
            for i, g in enumerate(coded):
                streams[g] = [s[i] for s in out["strings"]]
        ox, oy, ow, oh = _owned_slice(grid, index)
        residuals = None
        if header.error is not None and batch:
            y_hat = out.get("y_hat")
            if y_hat is None:  # a model whose compress does not return it: decode it
                with torch.no_grad():
                    y_hat = self.model.decompress(out["strings"], shape)["y_hat"]
            x64 = self._synthesis64(y_hat, *src.data.shape[-2:])
            unit, present = self._band_means(header, coded, x64)
            owned = (slice(oy, oy + oh), slice(ox, ox + ow))
            unit_own = unit[(slice(None), *owned)]
            residuals = self._residuals(header, src, unit_own, present, lo, hi, owned)
        mask = b""
        if src.planes.shape[0]:
            own = src.planes[:, oy : oy + oh, ox : ox + ow]
            if not own.all():
                mask = zlib.compress(np.packbits(own).tobytes(), _ZLIB_LEVEL)
        alpha = b""
        if src.alpha is not None:
            own_alpha = np.ascontiguousarray(src.alpha[oy : oy + oh, ox : ox + ow])
            alpha = zlib.compress(own_alpha.tobytes(), _ZLIB_LEVEL)
        return TileRecord(shape, streams, tile_mapping, mask, alpha, residuals)

    def _residuals(
        self,
        header: SceneHeader,
        src: SourceTile,
        unit: np.ndarray,
        present: np.ndarray,
        lo: list[float],
        hi: list[float],
        own: tuple[slice, slice],
    ) -> list[bytes]:
        """Per coded band, its residual record over the owned region (b"": none needed)."""
        err = header.error
        assert err is not None
        out = []
        for c, b in enumerate(header.coded_bands):
            x, valid = src.data[c][own], src.valid[c][own]
            if not present[c] or not valid.any():
                out.append(b"")
                continue
            p = predict(unit[c], lo[c], hi[c], header.dtype)
            bound = err.max_error
            if err.psnr_floor is not None:
                peak = 255.0 if header.dtype == "uint8" else float(hi[c]) - float(lo[c])
                d = p[valid].astype(np.float64) - x[valid].astype(np.float64)
                mse = float(np.dot(d, d)) / d.size
                if mse == 0 or (peak > 0 and 10 * math.log10(peak * peak / mse) >= err.psnr_floor):
                    out.append(b"")
                    continue
                if bound is None:
                    bound = derived_error(peak, err.psnr_floor, header.dtype)
            assert bound is not None
            record, _ = encode_band(x, valid, p, bound, _nodata(header, b))
            out.append(record)
        return out

    def _synthesis64(self, y_hat: torch.Tensor, h: int, w: int) -> np.ndarray:
        """The synthesis in float64, (B, 3, H, W) in [0, 1]: the error-bounded layer's
        predictor (see :mod:`pipeline.scenes.residual`)."""
        g_s = getattr(self.model, "g_s", None)
        if g_s is None:
            raise ValueError(
                f"{type(self.model).__name__} has no synthesis transform g_s: the "
                "error-bounded layer needs one"
            )
        if self._g_s64 is None:
            self._g_s64 = copy.deepcopy(g_s).double().eval()
        with torch.no_grad():
            x = self._g_s64(y_hat.to(self.device, torch.float64)).clamp_(0, 1)
        return x[:, :, :h, :w].cpu().numpy()

    @staticmethod
    def _band_means(
        header: SceneHeader, coded: list[int], x_hat: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(per coded band the mean of the channels that carry it, whether any does)."""
        bands = header.coded_bands
        total = np.zeros((len(bands), *x_hat.shape[-2:]), dtype=x_hat.dtype)
        count = np.zeros(len(bands), dtype=np.int64)
        for i, g in enumerate(coded):
            for c, b in enumerate(channels_of(header.groups[g])):
                total[bands.index(b)] += x_hat[i, c]
                count[bands.index(b)] += 1
        return total / np.maximum(count, 1)[:, None, None], count > 0

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (..., H, W) edge-padded to the model's stride, as tiles are before coding."""
        return pad_to_stride(x, self.stride)

    # -- decoding --------------------------------------------------------------------------
    def decode(
        self, header: SceneHeader, grid: SceneGrid, index: int, record: TileRecord
    ) -> DecodedTile:
        bands = header.coded_bands
        _, _, w, h = grid.window(index)
        if len(record.groups) != len(header.groups):
            raise ValueError(
                f"tile {index} holds {len(record.groups)} band groups, the header "
                f"{len(header.groups)}"
            )
        coded = [g for g, s in enumerate(record.groups) if s]
        expected = (
            -(-h // self.stride) * self.stride // 64,
            -(-w // self.stride) * self.stride // 64,
        )
        if coded and tuple(record.shape) != expected:
            # before decompress allocates anything: a crafted latent size asks for any memory
            raise ValueError(
                f"tile {index}: a {record.shape[1]}x{record.shape[0]} latent for a {w}x{h} "
                f"tile (expected {expected[1]}x{expected[0]}): the file is corrupted"
            )
        residuals = record.residuals or []
        if residuals and len(residuals) != len(bands):
            raise ValueError(
                f"tile {index} holds residuals of {len(residuals)} bands, the header codes "
                f"{len(bands)}: the file is corrupted"
            )
        if any(residuals) and header.error is None:
            raise ValueError(f"tile {index} holds residuals the header does not announce")
        unit64 = None
        if coded:
            n_streams = len(record.groups[coded[0]])
            strings = [[record.groups[g][k] for g in coded] for k in range(n_streams)]
            with torch.no_grad():
                dec = self.model.decompress(strings, record.shape)
            if any(residuals):
                x_hat = self._synthesis64(dec["y_hat"], h, w)
            else:
                x_hat = dec["x_hat"][:, :, :h, :w].float().cpu().numpy()
            unit, present = self._band_means(header, coded, x_hat)
            if any(residuals):
                unit64 = unit
            v = unit.astype(np.float32)
        else:
            v = np.zeros((len(bands), h, w), dtype=np.float32)
            present = np.zeros(len(bands), dtype=bool)
        if record.mapping is not None:
            lo = [m[0] for m in record.mapping]
            hi = [m[1] for m in record.mapping]
        else:
            lo, hi = scene_mapping(header)
        values = from_unit(v, lo, hi)
        _, _, ow, oh = _owned_slice(grid, index)
        planes = None
        if header.mask.planes:
            n = header.mask.planes * oh * ow
            if record.mask:
                bits = np.frombuffer(_inflate(record.mask, -(-n // 8), index), dtype=np.uint8)
                planes = np.unpackbits(bits, count=n).astype(bool)
                planes = planes.reshape(header.mask.planes, oh, ow)
            else:
                planes = np.ones((header.mask.planes, oh, ow), dtype=bool)
        alpha = None
        if header.alpha_band is not None:
            size = oh * ow * np.dtype(header.dtype).itemsize
            raw = _inflate(record.alpha, size, index)
            alpha = np.frombuffer(raw, dtype=header.dtype).reshape(oh, ow)
        exact: dict[int, np.ndarray] = {}
        if unit64 is not None:
            ox, oy, _, _ = _owned_slice(grid, index)
            own = (slice(oy, oy + oh), slice(ox, ox + ow))
            for c, b in enumerate(bands):
                if not residuals[c]:
                    continue
                if not present[c]:
                    raise ValueError(f"tile {index}: a residual for band {b}, which is not coded")
                p = predict(unit64[c][own], lo[c], hi[c], header.dtype)
                valid = _owned_valid(header, b, planes, alpha, (oh, ow))
                exact[c], _ = decode_band(residuals[c], valid, p)
        return DecodedTile(values, present, planes, alpha, exact)


def _inflate(data: bytes, size: int, index: int) -> bytes:
    """zlib data that must inflate to exactly ``size`` bytes, never more held in memory (a
    crafted plane could otherwise inflate without bound)."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, size + 1)
    except zlib.error as exc:
        raise ValueError(f"tile {index}: lossless plane unreadable ({exc}): corrupted") from None
    if len(out) != size or d.unconsumed_tail:
        raise ValueError(f"tile {index}: lossless plane of the wrong size: the file is corrupted")
    return out


def _nodata(header: SceneHeader, band: int) -> float | None:
    v = header.nodata[band - 1]
    return None if v is None else float(v)


def _owned_valid(
    header: SceneHeader,
    band: int,
    planes: np.ndarray | None,
    alpha: np.ndarray | None,
    shape: tuple[int, int],
) -> np.ndarray:
    """Which pixels of band ``band`` the owned region holds: what the encoder's source tile
    called valid there (the lossless planes and alpha rebuild it exactly)."""
    mode = header.mask.mode
    if mode == "nodata" and band in header.mask.bands:
        assert planes is not None
        return planes[header.mask.bands.index(band)]
    if mode == "dataset":
        assert planes is not None
        return planes[0]
    if mode == "alpha":
        assert alpha is not None
        return alpha > 0
    return np.ones(shape, dtype=bool)


def _owned_slice(grid: SceneGrid, index: int) -> tuple[int, int, int, int]:
    """The owned region relative to the tile's window: (x, y, w, h)."""
    x0, y0, _, _ = grid.window(index)
    ox, oy, ow, oh = grid.owned(index)
    return ox - x0, oy - y0, ow, oh


def _valid_range(data: np.ndarray, valid: np.ndarray) -> tuple[list[float], list[float]]:
    lo, hi = [], []
    for c in range(data.shape[0]):
        v = data[c][valid[c]]
        lo.append(float(v.min()) if v.size else 0.0)
        hi.append(float(v.max()) if v.size else 0.0)
    return lo, hi
