"""Decoding a scene or any window of it: tiles blended into cells, cells into the raster.

Tiles are decoded once each, in raster order. Each decoded tile is added, with its
blending weights, to the cells it covers; a cell is final (and handed out) once all its
tiles have been added. Live state is therefore the tile being decoded plus the cells still
waiting for the next tile row: about ``width x overlap`` pixels, never the whole scene.
A cell's sum runs over the same tiles in the same order whichever window asks for it, so
a window decodes to the same bits as that window of the whole scene.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.windows import Window
from torch import nn

from pipeline.scenes.bands import nudge_off_nodata, to_dtype
from pipeline.scenes.container import SceneHeader, SceneReader
from pipeline.scenes.grid import Cell, SceneGrid
from pipeline.scenes.tiles import DecodedTile, TileCoder, check_model

__all__ = ["Block", "SceneDecoder", "grid_of", "nodata_of"]


def grid_of(header: SceneHeader) -> SceneGrid:
    t = header.tiling
    return SceneGrid(header.width, header.height, t.tile_size, t.overlap, t.blend)


def nodata_of(header: SceneHeader, band: int) -> float | None:
    """Band ``band``'s (1-based) nodata value as a float (NaN for "nan")."""
    v = header.nodata[band - 1]
    if v is None:
        return None
    return float("nan") if v == "nan" else float(v)


@dataclass
class Block:
    """A finished piece of output: its window in scene pixels, its bands, and (for scenes
    with their own mask band) the mask to write."""

    window: Window
    data: np.ndarray  # (count, h, w) in the scene's dtype
    mask: np.ndarray | None  # (h, w) bool


class _Pending:
    """A cell (cut to the requested window) being summed."""

    def __init__(self, cell: Cell, box: tuple[int, int, int, int], bands: int) -> None:
        self.cell = cell
        self.box = box  # (row0, col0, h, w) in scene pixels
        _, _, h, w = box
        self.acc = np.zeros((bands, h, w), dtype=np.float32)
        self.wsum = np.zeros((bands, h, w), dtype=np.float32)
        self.waiting = set(cell.tiles) | {cell.owner}
        self.planes: np.ndarray | None = None
        self.alpha: np.ndarray | None = None
        self.exact: dict[int, np.ndarray] = {}  # coded band -> the owner's bounded values


class SceneDecoder:
    """Decode the tiles of an open ``.ltcs`` file into raster blocks.

    Args:
        reader: the open file.
        model: the model it was encoded with (checked against the file's weights hash), or a
            :class:`TileCoder` of it (reused across files: no re-hashing of the weights).
    """

    def __init__(
        self, reader: SceneReader, model: nn.Module | TileCoder | Any, device: Any = None
    ) -> None:
        self.reader = reader
        self.header = reader.header
        # a TileCoder, or a family's coder (pipeline.scenes.targets), which checks each
        # rate point against the file as it dispatches tiles to them
        self.coder = TileCoder(model, device) if isinstance(model, nn.Module) else model
        if self.header.family:
            if not hasattr(self.coder, "coders") and not hasattr(self.coder, "_load"):
                raise ValueError(
                    f"{reader.path}: its tiles use a family of {len(self.header.family)} rate "
                    "points; decode it with the family (decompress-scene finds each one)"
                )
        else:
            check_model(self.header, self.coder.identity)
        self.grid = grid_of(self.header)
        if len(self.grid) != len(reader):
            raise ValueError(
                f"{reader.path}: holds {len(reader)} tiles, its geometry needs {len(self.grid)}"
            )
        self.tiles_decoded = 0

    def full_window(self) -> Window:
        return Window(0, 0, self.header.width, self.header.height)

    def blocks(self, window: Window | None = None) -> Iterator[Block]:
        """Finished blocks covering ``window`` (default: the scene), each exactly once."""
        window = self.check_window(window or self.full_window())
        c0, r0 = int(window.col_off), int(window.row_off)
        c1, r1 = c0 + int(window.width), r0 + int(window.height)
        cells = self.grid.cells(c0, r0, c1 - c0, r1 - r0)
        by_tile: dict[int, list[int]] = {}
        for i, cell in enumerate(cells):
            for t in set(cell.tiles) | {cell.owner}:
                by_tile.setdefault(t, []).append(i)
        pending: dict[int, _Pending] = {}
        n_bands = len(self.header.coded_bands)
        for t in sorted(by_tile):
            tile = self._decode(t)
            for i in by_tile[t]:
                cell = cells[i]
                p = pending.get(i)
                if p is None:
                    box = (
                        max(cell.row_off, r0),
                        max(cell.col_off, c0),
                        min(cell.row_off + cell.height, r1) - max(cell.row_off, r0),
                        min(cell.col_off + cell.width, c1) - max(cell.col_off, c0),
                    )
                    p = pending[i] = _Pending(cell, box, n_bands)
                self._add(p, t, tile)
                if not p.waiting:
                    del pending[i]
                    yield self._finish(p)
            del tile
        assert not pending, "cells left unfinished"

    def read(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The whole ``window`` as one array (count, h, w) and its mask (dataset masks)."""
        window = self.check_window(window or self.full_window())
        c0, r0 = int(window.col_off), int(window.row_off)
        h, w = int(window.height), int(window.width)
        out = np.zeros((self.header.count, h, w), dtype=self.header.dtype)
        mask = np.zeros((h, w), dtype=bool) if self.header.mask.mode == "dataset" else None
        for b in self.blocks(window):
            y, x = int(b.window.row_off) - r0, int(b.window.col_off) - c0
            bh, bw = b.data.shape[1:]
            out[:, y : y + bh, x : x + bw] = b.data
            if mask is not None and b.mask is not None:
                mask[y : y + bh, x : x + bw] = b.mask
        return out, mask

    def check_window(self, window: Window) -> Window:
        """``window`` as integers, or ValueError if it is empty or leaves the scene."""
        c0, r0 = int(window.col_off), int(window.row_off)
        w, h = int(window.width), int(window.height)
        if w < 1 or h < 1 or c0 < 0 or r0 < 0:
            raise ValueError(f"empty or negative window {c0} {r0} {w} {h}")
        if c0 + w > self.header.width or r0 + h > self.header.height:
            raise ValueError(
                f"window {c0} {r0} {w} {h} exceeds the scene's "
                f"{self.header.width} x {self.header.height} pixels"
            )
        return Window(c0, r0, w, h)

    # -- internals -------------------------------------------------------------------------
    def _decode(self, index: int) -> DecodedTile:
        tile = self.coder.decode(self.header, self.grid, index, self.reader.tile(index))
        self.tiles_decoded += 1
        return tile

    def _add(self, p: _Pending, t: int, tile: DecodedTile) -> None:
        r0, c0, h, w = p.box
        if t in p.cell.tiles:
            tx, ty, _, _ = self.grid.window(t)
            weights = self.grid.weights(t)[r0 - ty : r0 - ty + h, c0 - tx : c0 - tx + w]
            vals = tile.values[:, r0 - ty : r0 - ty + h, c0 - tx : c0 - tx + w]
            for c in np.flatnonzero(tile.present):
                p.acc[c] += weights * vals[c]
                p.wsum[c] += weights
        if t == p.cell.owner:
            ox, oy, _, _ = self.grid.owned(t)
            sl = (slice(r0 - oy, r0 - oy + h), slice(c0 - ox, c0 - ox + w))
            if tile.planes is not None:
                p.planes = tile.planes[(slice(None), *sl)]
            if tile.alpha is not None:
                p.alpha = tile.alpha[sl]
            for c, exact in tile.exact.items():
                p.exact[c] = exact[sl]
        p.waiting.discard(t)

    def _finish(self, p: _Pending) -> Block:
        hdr = self.header
        r0, c0, h, w = p.box
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(p.wsum > 0, p.acc / p.wsum, 0.0).astype(np.float32)
        out = np.zeros((hdr.count, h, w), dtype=hdr.dtype)
        bands = hdr.coded_bands
        mode = hdr.mask.mode
        for c, b in enumerate(bands):
            # error-bounded bands take their owner's values as they are: blending them with
            # a neighbour's would void the bound
            out[b - 1] = p.exact[c] if c in p.exact else to_dtype(values[c], hdr.dtype)
        if hdr.alpha_band is not None:
            out[hdr.alpha_band - 1] = p.alpha
        mask = None
        for c, b in enumerate(bands):
            nodata = nodata_of(hdr, b)
            if mode == "nodata" and b in hdr.mask.bands:
                assert p.planes is not None  # every tile of a masked scene carries its planes
                valid = p.planes[hdr.mask.bands.index(b)]
            elif mode == "dataset":
                assert p.planes is not None
                valid = p.planes[0]
            elif mode == "alpha":
                assert p.alpha is not None
                valid = p.alpha > 0
            else:
                valid = None
            band = out[b - 1]
            if valid is not None:
                band[~valid] = _fill(nodata, band.dtype)
            if c in p.exact:  # the encoder kept valid pixels off nodata (or they are on it)
                continue
            if valid is not None:
                nudge_off_nodata(band, valid, nodata)
            elif nodata is not None:
                nudge_off_nodata(band, np.ones(band.shape, bool), nodata)
        if mode == "dataset":
            assert p.planes is not None
            mask = p.planes[0]
        return Block(Window(c0, r0, w, h), out, mask)


def _fill(nodata: float | None, dtype: np.dtype) -> Any:
    """What invalid pixels hold: the nodata value if it fits the type, else NaN / 0."""
    if nodata is None:
        return np.nan if dtype.kind == "f" else 0
    if dtype.kind == "f" or np.isnan(nodata):
        return nodata if dtype.kind == "f" else 0
    info = np.iinfo(dtype)
    return nodata if info.min <= nodata <= info.max else 0
