"""Band groups and the reversible bit-depth mapping."""

from __future__ import annotations

import numpy as np
import pytest

from ltchm.config import ConfigError, load_config
from pipeline.scenes.bands import (
    BandRange,
    channels_of,
    default_groups,
    fill_invalid,
    from_unit,
    nudge_off_nodata,
    to_dtype,
    to_unit,
    validate_groups,
)


@pytest.mark.parametrize(
    ("colorinterp", "groups", "alpha"),
    [
        (["red", "green", "blue"], [[1, 2, 3]], None),
        (["blue", "green", "red"], [[3, 2, 1]], None),  # RGB order for the model
        (["red", "green", "blue", "alpha"], [[1, 2, 3]], 4),
        (["gray", "undefined", "undefined", "undefined"], [[1, 2, 3], [4]], None),  # NAIP
        (["gray"], [[1]], None),
        (["gray"] + ["undefined"] * 9, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]], None),
        (["undefined", "red", "green", "blue", "undefined"], [[2, 3, 4], [1, 5]], None),
    ],
)
def test_default_groups(colorinterp, groups, alpha):
    assert default_groups(colorinterp) == (groups, alpha)
    validate_groups(groups, len(colorinterp), alpha)


def test_channels_replicate_the_last_band():
    assert channels_of([7]) == [7, 7, 7]
    assert channels_of([4, 5]) == [4, 5, 5]
    assert channels_of([1, 2, 3]) == [1, 2, 3]


@pytest.mark.parametrize(
    ("groups", "count", "alpha", "message"),
    [
        ([[1, 2]], 3, None, r"bands \[3\] are in no band group"),
        ([[1, 2, 3, 4]], 4, None, "1 to 3 bands"),
        ([[1, 2, 4]], 4, 4, "alpha band"),
        ([[1, 2, 5]], 4, None, "not a band of this 4-band scene"),
        ([], 1, None, "no band groups"),
    ],
)
def test_invalid_groups_are_clear_errors(groups, count, alpha, message):
    with pytest.raises(ValueError, match=message):
        validate_groups(groups, count, alpha)


def test_two_alpha_bands_are_refused():
    with pytest.raises(ValueError, match="at most one alpha"):
        default_groups(["red", "green", "blue", "alpha", "alpha"])


@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32", "uint8"])
def test_linear_mapping_is_reversible_over_the_whole_range(dtype):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(np.float32)
    lo, hi = (float(info.min), float(info.max)) if dtype != "float32" else (-1e4, 3e4)
    x = rng.uniform(lo, hi, size=(2, 32, 32)).astype(dtype)
    x[0, 0, 0], x[0, 0, 1] = np.asarray(lo, dtype), np.asarray(hi, dtype)  # extremes survive
    valid = np.ones(x.shape, dtype=bool)
    r = BandRange(2)
    r.update(x, valid)
    low, high = r.result()
    v = to_unit(x, low, high)
    assert v.dtype == np.float32 and v.min() >= 0 and v.max() <= 1
    back = to_dtype(from_unit(v, low, high), dtype)
    step = (np.asarray(high) - np.asarray(low)) * 2.0**-22  # float32 mapping precision
    assert back.dtype == np.dtype(dtype)
    err = np.abs(back.astype(np.float64) - x.astype(np.float64)).max(axis=(1, 2))
    assert np.all(err <= np.maximum(step, 1.0))
    assert back[0, 0, 0] == x[0, 0, 0] and back[0, 0, 1] == x[0, 0, 1]


def test_band_range_ignores_invalid_pixels_and_empty_bands():
    x = np.array([[[5, 9], [-9999, 7]], [[1, 1], [1, 1]]], dtype=np.int16)
    valid = np.array([[[True, True], [False, True]], [[False, False], [False, False]]])
    r = BandRange(2)
    r.update(x, valid)
    assert r.result() == ([5.0, 0.0], [9.0, 0.0])


def test_fill_invalid_uses_the_valid_mean():
    v = np.array([[[0.2, 0.4], [0.9, 0.9]]], dtype=np.float32)
    fill_invalid(v, np.array([[[True, True], [False, False]]]))
    np.testing.assert_allclose(v[0, 1], [0.3, 0.3])


def test_to_dtype_rounds_and_clips():
    assert to_dtype(np.array([-3.0, 0.4, 0.6, 300.0]), "uint8").tolist() == [0, 0, 1, 255]
    assert to_dtype(np.array([1.5]), "float32").dtype == np.float32


@pytest.mark.parametrize(
    ("dtype", "nodata", "expected"), [("uint8", 0, 1), ("uint8", 255, 254), ("float32", -1.0, None)]
)
def test_valid_pixels_never_land_on_nodata(dtype, nodata, expected):
    x = np.array([nodata, nodata, 7], dtype=dtype)
    valid = np.array([True, False, True])
    nudge_off_nodata(x, valid, nodata)
    assert x[1] == nodata and x[2] == 7 and x[0] != nodata
    if expected is not None:
        assert x[0] == expected


def test_scenes_config_validates_geometry():
    cfg = load_config(overrides={"scenes.overlap": 16}).scenes
    assert cfg.blend() == 16
    for key, value, message in [
        ("scenes.tile_size", 500, "multiple of 64"),
        ("scenes.overlap", 300, "at most tile_size / 2"),
        ("scenes.blend_width", 64, "exceeds the overlap"),
        ("scenes.band_groups", [[1, 2, 3, 4]], "1 to 3 band numbers"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(overrides={key: value})
