"""The overlapping tile grid: coverage, weights, ownership and the cells of windows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.scenes.grid import Axis, SceneGrid

CASES = [
    (1000, 512, 32, 32),
    (1000, 512, 32, 0),
    (1000, 512, 32, 16),
    (513, 512, 32, 32),  # a last tile of 33 px
    (100, 512, 32, 32),  # one tile, smaller than a tile
    (5000, 256, 64, 64),
    (700, 64, 32, 20),  # overlap = tile / 2
    (65, 64, 1, 1),
    (2000, 128, 0, 0),  # no overlap
]


@pytest.mark.parametrize(("length", "tile", "overlap", "blend"), CASES)
def test_axis_covers_weights_sum_to_one_and_ownership_partitions(length, tile, overlap, blend):
    ax = Axis(length, tile, overlap, blend)
    total = np.zeros(length)
    owners = np.zeros(length, dtype=int)
    for k in range(ax.count):
        a, b = ax.start(k), ax.stop(k)
        assert b - a == (tile if k < ax.count - 1 else b - a) and b - a <= tile
        total[a:b] += ax.weights(k)
        lo, hi = ax.own(k)
        assert a <= lo < hi <= b  # a tile owns pixels it covers
        owners[lo:hi] += 1
        if k > 0:  # neighbours share exactly `overlap` pixels
            assert ax.stop(k - 1) - a == overlap
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert (owners == 1).all()
    assert ax.count == (1 if length <= tile else 1 + -(-(length - tile) // (tile - overlap)))


@pytest.mark.parametrize(("length", "tile", "overlap", "blend"), CASES)
def test_segments_list_exactly_the_tiles_with_weight(length, tile, overlap, blend):
    ax = Axis(length, tile, overlap, blend)
    segs = ax.segments
    assert segs[0].start == 0 and segs[-1].stop == length
    assert all(a.stop == b.start for a, b in itertools.pairwise(segs))
    for s in segs:
        for k in range(ax.count):
            inside = ax.start(k) <= s.start and s.stop <= ax.stop(k)
            w = ax.weights(k)[s.start - ax.start(k) : s.stop - ax.start(k)] if inside else []
            assert (k in s.tiles) == (inside and max(w) > 0)
        lo, hi = ax.own(s.owner)
        assert lo <= s.start and s.stop <= hi


def test_blend_zero_is_a_hard_cut_at_the_midline():
    ax = Axis(1000, 512, 32, 0)
    w0, w1 = ax.weights(0), ax.weights(1)
    mid = ax.start(1) + 16
    assert set(np.unique(w0)) == {0.0, 1.0}
    assert w0[mid - 1] == 1 and w0[mid] == 0 and w1[mid - ax.start(1)] == 1
    assert ax.own(0) == (0, mid)


def test_linear_blend_ramps_across_the_whole_overlap():
    ax = Axis(1000, 512, 32, 32)
    ramp = ax.weights(1)[:32]
    assert np.all(np.diff(ramp) > 0) and ramp[0] == pytest.approx(0.5 / 32)
    assert ax.weights(1)[32] == 1.0


def test_grid_cells_and_tiles_of_windows():
    g = SceneGrid(1000, 700, 512, 32, 32)
    assert (g.rows, g.cols, len(g)) == (2, 3, 6)
    assert g.window(4) == (480, 480, 512, 220)
    # cells tile the scene exactly
    cover = np.zeros((700, 1000), dtype=int)
    for c in g.cells(0, 0, 1000, 700):
        cover[c.row_off : c.row_off + c.height, c.col_off : c.col_off + c.width] += 1
        assert list(c.tiles) == sorted(c.tiles)
    assert (cover == 1).all()
    assert g.tiles_for(10, 10, 20, 20) == [0]
    assert g.tiles_for(490, 10, 10, 10) == [0, 1]  # inside the overlap of tiles 0 and 1
    assert g.tiles_for(490, 490, 10, 10) == [0, 1, 3, 4]
    assert g.tiles_for(0, 0, 1000, 700) == list(range(6))


def test_row_bands_split_rows_along_ownership():
    g = SceneGrid(300, 5000, 256, 32, 32)
    bands = g.row_bands(3)
    assert bands[0][0] == 0 and bands[-1][1] == 5000 and len(bands) == 3
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bands))
    assert g.row_bands(100) == [g.y.own(k) for k in range(g.rows)]


@pytest.mark.parametrize(
    ("args", "message"),
    [((100, 64, 33, 0), "overlap <= tile / 2"), ((100, 64, 8, 9), "blend <= overlap"),
     ((0, 64, 8, 8), "positive")],
)  # fmt: skip
def test_invalid_geometry_is_refused(args, message):
    with pytest.raises(ValueError, match=message):
        Axis(*args)
