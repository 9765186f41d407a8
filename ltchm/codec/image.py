"""``ImageCodec``: 8-bit RGB images of any size to ``.ltc`` bytes and back.

Images are padded to the model's multiple of 64 by edge replication: remote-sensing scenes
have content up to their borders, and replicating the border row/column extends it with
flat content that costs almost no bits, where zero padding would add a hard edge (ringing,
bits) and reflection would mirror texture that must then be coded; replication is also the
only mode defined for images smaller than the padding (a 1 x 1 image). Measured on the dev
images: see benchmarks/RESULTS.md. Large images are coded as independent tiles of
``tile_size`` pixels so that memory stays bounded.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltchm.codec.checkpoint import prepare_for_coding
from ltchm.codec.container import LtcFile, Tile, pack, unpack
from ltchm.codec.identity import ModelIdentity, identity_of
from ltchm.imageio import MAX_PIXELS
from ltchm.models import CodingModel

__all__ = ["ImageCodec", "ModelMismatchError", "image_tiles", "pad_to_stride"]


class ModelMismatchError(ValueError):
    """A file encoded with another model than the one asked to decode it."""


def pad_to_stride(x: Tensor, stride: int) -> Tensor:
    """``x`` (..., H, W) edge-replicated at the right and bottom to multiples of ``stride``,
    as images and scene tiles are padded before coding."""
    H, W = x.shape[-2:]
    ph, pw = (-H) % stride, (-W) % stride
    if not ph and not pw:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def image_tiles(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(top, left, h, w) of the tiles covering the image in raster order."""
    if tile <= 0:
        return [(0, 0, height, width)]
    return [
        (top, left, min(tile, height - top), min(tile, width - left))
        for top in range(0, height, tile)
        for left in range(0, width, tile)
    ]


class ImageCodec:
    """Encode and decode 8-bit RGB images with a compression model.

    Args:
        model: a model of ``ltchm.zoo`` (LTCHM, TCM or a CompressAI baseline), with its
            registry config; coding tables are built if it has none.
        tile_size: images larger than this (pixels a side) are coded as independent tiles;
            a multiple of 64. ``0`` codes every image whole.
        device: where the networks run (the model's device by default).
        source: where the model's weights came from (``ltchm.codec.spec.spec_source``),
            recorded in every file so that a decoder can find the model again.
    """

    def __init__(
        self, model: CodingModel, tile_size: int = 1024, device: Any = None, source: str = ""
    ) -> None:
        stride = getattr(model, "stride", 64)
        if tile_size % stride:
            raise ValueError(f"tile_size must be a multiple of {stride}, got {tile_size}")
        self.device = torch.device(device) if device is not None else _device_of(model)
        self.model: CodingModel = prepare_for_coding(model.to(self.device))
        self.stride = stride
        self.tile_size = tile_size
        self.identity: ModelIdentity = identity_of(self.model)
        self.context = getattr(self.model, "context", "none")
        self.source = source

    def model_identity(self) -> dict[str, Any]:
        return asdict(self.identity)

    def encode(self, x: Tensor) -> bytes:
        """A complete ``.ltc`` file for ``x``, (3, H, W) floats in [0, 1] or uint8 (converted
        tile by tile: the same bytes in a quarter of the memory)."""
        if x.dim() != 3 or x.shape[0] != 3:
            raise ValueError(
                f"expected an RGB image (3, H, W), got shape {tuple(x.shape)}; other band "
                "counts go through 'ltchm compress-scenes', which maps bands"
            )
        _, H, W = x.shape
        if H == 0 or W == 0:
            raise ValueError("cannot code an empty image")
        tile = self.tile_size if max(H, W) > self.tile_size else 0
        tiles = []
        for top, left, h, w in image_tiles(H, W, tile):
            patch = x[:, top : top + h, left : left + w].to(self.device, torch.float32)
            if x.dtype == torch.uint8:
                patch = patch.div_(255.0)
            out = self.model.compress(self.pad(patch)[None])
            tiles.append(Tile(tuple(out["shape"]), [s[0] for s in out["strings"]]))
        return pack(
            LtcFile(self.identity, H, W, self.context, "replicate", tile, tiles, self.source)
        )

    def decode(self, data: bytes, dtype: torch.dtype = torch.float32) -> Tensor:
        """The image of an ``.ltc`` file, (3, H, W) floats in [0, 1] on the CPU, or with
        ``dtype=torch.uint8`` its 8-bit pixels (rounded tile by tile: a quarter of the
        memory)."""
        f = unpack(data)
        self.check_identity(f.identity)
        if f.context != self.context:
            raise ValueError(
                f"corrupt file: it announces {f.context} context, its model codes with "
                f"{self.context}"
            )
        if f.tile_size % self.stride:
            raise ValueError(
                f"corrupt file: tile size {f.tile_size} is not a multiple of the model's "
                f"stride {self.stride}"
            )
        if f.height * f.width > MAX_PIXELS:
            raise ValueError(
                f"{f.width}x{f.height}: over the image codec's {MAX_PIXELS / 1e6:.0f} Mpx; "
                "images this large go through 'ltchm compress-scenes' (read and written by "
                "windows)"
            )
        grid = image_tiles(f.height, f.width, f.tile_size)
        if len(grid) != len(f.tiles):
            raise ValueError(f"file holds {len(f.tiles)} tiles, its geometry needs {len(grid)}")
        for (_, _, h, w), tile in zip(grid, f.tiles, strict=True):
            # checked before anything is allocated: a crafted latent size would otherwise
            # make the decoder allocate whatever the file asks for
            if tuple(tile.shape) != self.latent_shape(h, w):
                raise ValueError(
                    f"corrupt file: a {w}x{h} tile announces a {tile.shape[1]}x{tile.shape[0]} "
                    f"latent, the model codes it as {self.latent_shape(h, w)[::-1]}"
                )
        out = torch.empty(3, f.height, f.width, dtype=dtype)
        for (top, left, h, w), tile in zip(grid, f.tiles, strict=True):
            x_hat = self.model.decompress([[s] for s in tile.streams], tile.shape)["x_hat"]
            patch = x_hat[0, :, :h, :w].cpu()
            if dtype == torch.uint8:
                patch = patch.clamp(0, 1).mul(255).round().to(torch.uint8)
            out[:, top : top + h, left : left + w] = patch
        return out

    def latent_shape(self, height: int, width: int) -> tuple[int, int]:
        """The shape ``compress`` reports for an image of this size: the hyper-latent's, at
        1/64 of the padded size for every model of the zoo (analysis 16 x, hyper 4 x)."""
        return (
            -(-height // self.stride) * self.stride // 64,
            -(-width // self.stride) * self.stride // 64,
        )

    def check_identity(self, identity: ModelIdentity) -> None:
        if not identity.matches(self.identity):
            raise ModelMismatchError(
                f"this file was encoded with {identity.short()}, not with the model given, "
                f"{self.identity.short()}"
            )

    def pad(self, x: Tensor) -> Tensor:
        """``x`` (C, H, W) padded to the model's stride, as the codec pads before coding."""
        return pad_to_stride(x, self.stride)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
