import numpy as np
import pytest
import rasterio

from pipeline.stretch import apply_stretch, percentile_stretch, stretch_params


@pytest.fixture(scope="module")
def rgb16(dev_dir):
    path = dev_dir / "scenes" / "riocolor_rgb16.tif"
    with rasterio.open(path) as ds:
        return np.moveaxis(ds.read(), 0, -1)


def test_percentile_stretch_of_real_uint16(rgb16):
    assert rgb16.dtype == np.uint16
    out, params = percentile_stretch(rgb16, None, (2, 98))
    assert out.dtype == np.uint8 and out.shape == rgb16.shape
    for c in range(3):
        lo, hi = np.percentile(rgb16[..., c], [2, 98])
        assert params["low"][c] == pytest.approx(lo) and params["high"][c] == pytest.approx(hi)
        # ~2 % of pixels at or below the low point map to 0, ~2 % at or above the high one to 255.
        assert np.mean(out[..., c] == 0) == pytest.approx(0.02, abs=0.01)
        assert np.mean(out[..., c] == 255) == pytest.approx(0.02, abs=0.01)
    assert params["percentiles"] == [2.0, 98.0] and params["method"] == "percentile"
    # Reproducible: the parameters alone give back the same image.
    assert np.array_equal(apply_stretch(rgb16, params), out)
    again, params2 = percentile_stretch(rgb16.copy(), None, (2, 98))
    assert np.array_equal(again, out) and params2 == params


def test_stretch_ignores_invalid_pixels():
    rng = np.random.default_rng(1)
    data = rng.integers(1000, 2000, (64, 64, 1)).astype(np.uint16)
    valid = np.ones((64, 64), bool)
    data[:32] = 0  # a nodata border that must not pull the low percentile to 0
    valid[:32] = False
    out, params = percentile_stretch(data, valid)
    assert params["low"][0] > 1000
    assert (out[:32] == 0).all()
    assert out[32:].max() == 255


def test_flat_and_float_bands():
    flat = np.full((8, 8, 1), 7, np.uint16)
    out, params = percentile_stretch(flat)
    assert params["low"] == params["high"] == [7.0] and (out == 0).all()
    data = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8, 1)
    data[0, 0] = np.nan
    valid = np.isfinite(data[..., 0])
    out, _ = percentile_stretch(data, valid)
    assert out[0, 0, 0] == 0 and out.max() == 255
    with pytest.raises(ValueError, match="no valid pixels"):
        stretch_params(data, np.zeros((8, 8), bool))
