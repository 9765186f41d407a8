import numpy as np
import pytest

from pipeline.tiling import pad_to, skip_reason, tile_grid, tile_origins


@pytest.mark.parametrize(
    ("length", "tile", "stride", "expected"),
    [
        (1024, 256, 256, [0, 256, 512, 768]),
        (1111, 256, 256, [0, 256, 512, 768, 855]),  # last one shifted in to end at the edge
        (256, 256, 256, [0]),
        (100, 256, 256, [0]),  # shorter than a tile: one (padded) tile
        (600, 256, 128, [0, 128, 256, 344]),
    ],
)
def test_tile_origins(length, tile, stride, expected):
    assert tile_origins(length, tile, stride) == expected


@pytest.mark.parametrize(("w", "h"), [(1111, 1182), (712, 557), (257, 256), (300, 1000)])
def test_grid_covers_every_pixel_and_stays_inside(w, h):
    covered = np.zeros((h, w), dtype=np.int32)
    grid = tile_grid(h, w, 256, 256)
    for x, y in grid:
        assert 0 <= x <= w - 256 and 0 <= y <= h - 256
        covered[y : y + 256, x : x + 256] += 1
    assert covered.min() >= 1
    assert len(grid) == len(set(grid))
    assert grid == sorted(grid, key=lambda p: (p[1], p[0]))  # row-major


def test_pad_marks_padding_invalid():
    img = np.arange(100 * 120 * 3, dtype=np.uint8).reshape(100, 120, 3)
    padded, valid = pad_to(img, None, 256, "symmetric")
    assert padded.shape == (256, 256, 3) and valid.shape == (256, 256)
    assert np.array_equal(padded[:100, :120], img)
    assert valid[:100, :120].all() and not valid[100:].any() and not valid[:, 120:].any()
    # Wider than the image itself: numpy repeats the reflection.
    assert np.array_equal(padded[100:200, :120], img[::-1])
    same, mask = pad_to(img[:, :, :], np.ones((100, 120), bool), 64, "edge")
    assert same.shape == img.shape and mask.all()


def test_skip_rule():
    rng = np.random.default_rng(0)
    textured = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    flat = np.full((256, 256, 3), (10, 80, 200), np.uint8)
    almost_flat = flat.copy()
    almost_flat[0, 0] = 11
    assert skip_reason(textured, None, 0.95, 1.0) is None
    assert skip_reason(flat, None, 0.95, 1.0) == "constant"  # uniform colour, not just gray
    assert skip_reason(almost_flat, None, 0.95, 1.0) == "constant"
    assert skip_reason(almost_flat, None, 0.95, 0.0) is None
    valid = np.zeros((256, 256), bool)
    valid[:10] = True  # 3.9 % valid
    assert skip_reason(textured, valid, 0.95, 1.0) == "nodata"
    valid[:20] = True  # 7.8 % valid
    assert skip_reason(textured, valid, 0.95, 1.0) is None
