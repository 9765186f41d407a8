"""The overlapping tile grid of a scene, the blending weights, and the mosaic's cells.

Along each axis, tiles of ``tile`` pixels start every ``tile - overlap`` pixels; the last tile
is cut at the scene's edge (the codec pads it to the model's multiple of 64), so every tile
but the last along an axis is whole and neighbours share exactly ``overlap`` pixels.

Each overlap is blended by a linear ramp ``blend`` pixels wide centred in it: the weights of
the two tiles sum to one, and ``blend = 0`` is the hard cut at the overlap's midline
(cropped centres). The midlines also split the scene into the regions each tile *owns*: the
lossless planes (masks, alpha) are stored once, by their owner.

Splitting an axis at every tile start and end, ramp end and midline gives *segments*: in a
segment the same tiles have non-zero weight and one tile owns it. A *cell* (a pair of
segments) is therefore rendered from a fixed list of tiles, always summed in raster order,
so any window of a scene decodes to the same bits as the whole scene.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["Axis", "Cell", "SceneGrid", "Segment"]


@dataclass(frozen=True)
class Segment:
    start: int
    stop: int
    tiles: tuple[int, ...]  # tile indices along the axis with non-zero weight, ascending
    owner: int


@dataclass(frozen=True)
class Axis:
    """Tile layout along one axis of ``length`` pixels."""

    length: int
    tile: int
    overlap: int
    blend: int

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"axis length must be positive, got {self.length}")
        # at most two tiles meet along an axis: the ramps then sum to one by construction
        if self.tile < 2 or not 0 <= 2 * self.overlap <= self.tile:
            raise ValueError(
                f"need 0 <= overlap <= tile / 2, got overlap {self.overlap}, tile {self.tile}"
            )
        if not 0 <= self.blend <= self.overlap:
            raise ValueError(f"need 0 <= blend <= overlap, got {self.blend} > {self.overlap}")

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @cached_property
    def count(self) -> int:
        if self.length <= self.tile:
            return 1
        return 1 + math.ceil((self.length - self.tile) / self.stride)

    def start(self, k: int) -> int:
        return k * self.stride

    def stop(self, k: int) -> int:
        return min(self.start(k) + self.tile, self.length)

    def _ramp(self, k: int) -> tuple[int, int]:
        """[lo, hi) of the ramp between tiles k and k + 1 (lo == hi: a hard cut)."""
        lo = self.start(k + 1) + (self.overlap - self.blend) // 2
        return lo, lo + self.blend

    def _mid(self, k: int) -> int:
        """The midline between tiles k and k + 1: tile k owns what lies before it."""
        return self.start(k + 1) + self.overlap // 2

    def own(self, k: int) -> tuple[int, int]:
        """[start, stop) of the pixels tile ``k`` owns."""
        lo = 0 if k == 0 else self._mid(k - 1)
        hi = self.length if k == self.count - 1 else self._mid(k)
        return lo, hi

    def weights(self, k: int) -> np.ndarray:
        """Blending weights of tile ``k`` over its pixels, float32."""
        return self._weight_at(k, np.arange(self.start(k), self.stop(k)) + 0.5).astype(np.float32)

    def _weight_at(self, k: int, pos: np.ndarray) -> np.ndarray:
        w = np.ones(pos.shape, dtype=np.float64)
        if k > 0:
            w = np.minimum(w, self._up(k - 1, pos))
        if k < self.count - 1:
            w = np.minimum(w, 1.0 - self._up(k, pos))
        return w

    def _up(self, k: int, pos: np.ndarray) -> np.ndarray:
        """Weight of tile k + 1 across the ramp between k and k + 1 (0 before it, 1 after)."""
        lo, hi = self._ramp(k)
        if hi == lo:
            return (pos >= lo).astype(np.float64)
        return np.clip((pos - lo) / (hi - lo), 0.0, 1.0)

    @cached_property
    def segments(self) -> tuple[Segment, ...]:
        cuts = {0, self.length}
        for k in range(self.count):
            cuts.update((self.start(k), self.stop(k), *self.own(k)))
            if k < self.count - 1:
                cuts.update(self._ramp(k))
        edges = sorted(c for c in cuts if 0 <= c <= self.length)
        out = []
        for a, b in itertools.pairwise(edges):
            # weights are monotonic inside a segment: its end pixels tell whether one is > 0
            ends = np.array([a + 0.5, b - 0.5])
            near = range(
                max(0, (a - self.tile) // self.stride), min(self.count, a // self.stride + 2)
            )
            tiles = [
                k
                for k in near
                if self.start(k) <= a and b <= self.stop(k) and self._weight_at(k, ends).max() > 0
            ]
            owner = next(k for k in near if self.own(k)[0] <= a < self.own(k)[1])
            out.append(Segment(a, b, tuple(tiles), owner))
        return tuple(out)

    def segments_in(self, lo: int, hi: int) -> list[Segment]:
        return [s for s in self.segments if s.start < hi and s.stop > lo]


@dataclass(frozen=True)
class Cell:
    """A rectangle rendered from a fixed list of tiles (raster indices, ascending)."""

    row_off: int
    col_off: int
    height: int
    width: int
    tiles: tuple[int, ...]
    owner: int


class SceneGrid:
    """The tiles of a ``width`` x ``height`` scene, their weights, and the cells of windows."""

    def __init__(self, width: int, height: int, tile: int, overlap: int, blend: int) -> None:
        self.width, self.height = width, height
        self.tile, self.overlap, self.blend = tile, overlap, blend
        self.x = Axis(width, tile, overlap, blend)
        self.y = Axis(height, tile, overlap, blend)

    @property
    def rows(self) -> int:
        return self.y.count

    @property
    def cols(self) -> int:
        return self.x.count

    def __len__(self) -> int:
        return self.rows * self.cols

    def index(self, row: int, col: int) -> int:
        return row * self.cols + col

    def position(self, index: int) -> tuple[int, int]:
        """(row, col) of tile ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"tile {index} outside the grid of {len(self)} tiles")
        return divmod(index, self.cols)

    def window(self, index: int) -> tuple[int, int, int, int]:
        """(col_off, row_off, width, height) of tile ``index``."""
        r, c = self.position(index)
        x0, y0 = self.x.start(c), self.y.start(r)
        return x0, y0, self.x.stop(c) - x0, self.y.stop(r) - y0

    def owned(self, index: int) -> tuple[int, int, int, int]:
        """(col_off, row_off, width, height) of the pixels tile ``index`` owns."""
        r, c = self.position(index)
        (x0, x1), (y0, y1) = self.x.own(c), self.y.own(r)
        return x0, y0, x1 - x0, y1 - y0

    def weights(self, index: int) -> np.ndarray:
        """(h, w) float32 blending weights of tile ``index``."""
        r, c = self.position(index)
        return np.outer(self.y.weights(r), self.x.weights(c))

    def cells(self, col_off: int, row_off: int, width: int, height: int) -> list[Cell]:
        """The cells meeting a window, in raster order (whole cells, not cut to the window)."""
        out = []
        for sy in self.y.segments_in(row_off, row_off + height):
            for sx in self.x.segments_in(col_off, col_off + width):
                tiles = tuple(self.index(r, c) for r in sy.tiles for c in sx.tiles)
                owner = self.index(sy.owner, sx.owner)
                out.append(
                    Cell(sy.start, sx.start, sy.stop - sy.start, sx.stop - sx.start, tiles, owner)
                )
        return out

    def tiles_for(self, col_off: int, row_off: int, width: int, height: int) -> list[int]:
        """Every tile a window needs, ascending."""
        needed: set[int] = set()
        for cell in self.cells(col_off, row_off, width, height):
            needed.update(cell.tiles)
            needed.add(cell.owner)
        return sorted(needed)

    def row_bands(self, parts: int) -> list[tuple[int, int]]:
        """Split the scene's rows into up to ``parts`` bands along tile-row ownership lines."""
        parts = max(1, min(parts, self.rows))
        bounds = [round(i * self.rows / parts) for i in range(parts + 1)]
        return [
            (self.y.own(a)[0], self.y.own(b - 1)[1]) for a, b in itertools.pairwise(bounds) if b > a
        ]
