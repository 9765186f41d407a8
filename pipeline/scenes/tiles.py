"""One tile of a scene through the model: band groups in, a :class:`TileRecord` out, and back.

The tile's band groups are coded as one batch of 3-channel images, padded to the model's
multiple of 64 by edge replication as :class:`ltchm.codec.ImageCodec` pads whole images.
Decoding is deterministic (integer entropy-parameter path), so a tile decodes to the same
bits in any process, batch or window.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ltchm.codec.checkpoint import prepare_for_coding
from ltchm.codec.identity import ModelIdentity, identity_of
from ltchm.codec.image import ModelMismatchError
from pipeline.scenes.bands import channels_of, fill_invalid, from_unit, to_unit
from pipeline.scenes.container import ModelInfo, SceneHeader, TileRecord
from pipeline.scenes.grid import SceneGrid
from pipeline.scenes.source import SourceTile

__all__ = ["DecodedTile", "TileCoder", "model_info"]

_ZLIB_LEVEL = 6


@dataclass
class DecodedTile:
    """``values``: (coded bands, h, w) float32 in native units; ``present``: per coded band,
    whether any group coded it here; ``planes``/``alpha``: the lossless data of the region
    the tile owns."""

    values: np.ndarray
    present: np.ndarray
    planes: np.ndarray | None
    alpha: np.ndarray | None


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
        if batch:
            x = torch.from_numpy(np.stack(batch)).to(self.device)
            out = self.model.compress(self._pad(x))
            shape = (int(out["shape"][0]), int(out["shape"][1]))
            for i, g in enumerate(coded):
                streams[g] = [s[i] for s in out["strings"]]
        ox, oy, ow, oh = _owned_slice(grid, index)
        mask = b""
        if src.planes.shape[0]:
            own = src.planes[:, oy : oy + oh, ox : ox + ow]
            if not own.all():
                mask = zlib.compress(np.packbits(own).tobytes(), _ZLIB_LEVEL)
        alpha = b""
        if src.alpha is not None:
            own_alpha = np.ascontiguousarray(src.alpha[oy : oy + oh, ox : ox + ow])
            alpha = zlib.compress(own_alpha.tobytes(), _ZLIB_LEVEL)
        return TileRecord(shape, streams, tile_mapping, mask, alpha)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        ph, pw = (-H) % self.stride, (-W) % self.stride
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    # -- decoding --------------------------------------------------------------------------
    def decode(
        self, header: SceneHeader, grid: SceneGrid, index: int, record: TileRecord
    ) -> DecodedTile:
        bands = header.coded_bands
        _, _, w, h = grid.window(index)
        total = np.zeros((len(bands), h, w), dtype=np.float32)
        count = np.zeros(len(bands), dtype=np.float32)
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
        if coded:
            n_streams = len(record.groups[coded[0]])
            strings = [[record.groups[g][k] for g in coded] for k in range(n_streams)]
            with torch.no_grad():
                x_hat = self.model.decompress(strings, record.shape)["x_hat"]
            x_hat = x_hat[:, :, :h, :w].float().cpu().numpy()
            for i, g in enumerate(coded):
                for c, b in enumerate(channels_of(header.groups[g])):
                    total[bands.index(b)] += x_hat[i, c]
                    count[bands.index(b)] += 1
        present = count > 0
        v = total / np.maximum(count, 1)[:, None, None]
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
        return DecodedTile(values, present, planes, alpha)


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
