import io

import numpy as np
import pytest
import rasterio
from PIL import Image

from pipeline.decode import DecodeError, choose_bands, decode_image


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return np.moveaxis(ds.read(), 0, -1)


def test_rgb_png_is_lossless(dev):
    path = dev / "dota" / "P1888.png"
    img = decode_image(path.read_bytes(), "images/P1888.png", layout="dota")
    assert img.rgb.dtype == np.uint8 and img.rgb.shape == (557, 712, 3)
    assert np.array_equal(img.rgb, np.asarray(Image.open(path)))
    assert img.valid is None and img.conversions == [] and img.stretch is None


def test_rgba_alpha_becomes_the_validity_mask(dev):
    arr = np.asarray(Image.open(dev / "dota" / "P0004__1__0___0.png")).copy()
    assert arr.shape[-1] == 4
    arr[:50, :, 3] = 0
    img = decode_image(_png(arr, "RGBA"), "x.png", layout="dota")
    assert np.array_equal(img.rgb, arr[..., :3])
    assert not img.valid[:50].any() and img.valid[50:].all()
    assert "alpha band as validity mask" in img.conversions


def test_grayscale_and_palette_png():
    gray = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)
    img = decode_image(_png(gray, "L"), "g.png", layout="folder")
    assert img.rgb.shape == (64, 64, 3)
    assert all(np.array_equal(img.rgb[..., c], gray) for c in range(3))
    assert img.conversions == ["grayscale to RGB"]
    pal = Image.fromarray(gray, "L").convert("P")
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    img = decode_image(buf.getvalue(), "p.png", layout="folder")
    assert "palette to RGB" in img.conversions and img.rgb.shape == (64, 64, 3)


def test_16bit_png_is_stretched():
    ramp = (np.arange(128 * 128, dtype=np.uint32).reshape(128, 128) * 3).astype(np.uint16)
    img = decode_image(_png(ramp), "deep.png", layout="folder")
    assert img.dtype == "uint16" and img.rgb.dtype == np.uint8
    assert img.stretch["percentiles"] == [2.0, 98.0]
    assert img.stretch["low"][0] == pytest.approx(np.percentile(ramp, 2))
    assert any("uint16 to uint8" in c for c in img.conversions)
    assert img.rgb.min() == 0 and img.rgb.max() == 255


def test_gaofen_band_order_and_overrides(dev):
    path = dev / "scenes" / "opengeos_naip_m_4709963_se_14_1_20100629.tif"
    bands = _read(path)
    assert bands.shape[-1] == 4
    gaofen = decode_image(path, path.name, layout="gaofen")
    assert np.array_equal(gaofen.rgb, bands[..., [2, 1, 0]])  # B,G,R,NIR -> R,G,B
    assert gaofen.conversions == ["bands 3,2,1 (B,G,R,NIR) of 4"]
    assert gaofen.geo["crs"] == "EPSG:26914" and len(gaofen.geo["transform"]) == 6
    plain = decode_image(path, path.name, layout="folder")
    assert np.array_equal(plain.rgb, bands[..., :3])
    forced = decode_image(path, path.name, layout="gaofen", rgb_bands=(1, 2, 3))
    assert np.array_equal(forced.rgb, bands[..., :3])
    # From bytes (an archive member) exactly as from the file.
    assert np.array_equal(
        decode_image(path.read_bytes(), path.name, layout="gaofen").rgb, gaofen.rgb
    )


def test_multispectral_uint16_and_sar(dev):
    ms = decode_image(dev / "scenes" / "paddlers_ssst_multispectral.tif", "ms.tif", layout="gaofen")
    assert ms.bands == 10 and ms.dtype == "uint16" and ms.rgb.shape == (256, 256, 3)
    assert len(ms.stretch["low"]) == 3
    sar = decode_image(dev / "sar" / "gfc2021_sar_test_11.tif", "sar.tif", layout="gaofen")
    assert sar.bands == 1 and sar.conversions == ["grayscale to RGB"] and sar.stretch is None
    assert np.array_equal(sar.rgb[..., 0], sar.rgb[..., 2])


def test_nodata_and_alpha_masks_of_geotiffs(dev):
    byte = decode_image(dev / "scenes" / "rasterio_RGB.byte.tif", "RGB.byte.tif", layout="gaofen")
    raw = _read(dev / "scenes" / "rasterio_RGB.byte.tif")
    assert byte.valid is not None
    assert np.array_equal(byte.valid, (raw != 0).any(axis=-1))
    alpha = decode_image(
        dev / "scenes" / "riotiler_pix4d_alpha_nodata.tif", "a.tif", layout="gaofen"
    )
    assert 0.5 < alpha.valid.mean() < 1.0


def test_bad_members_raise_decode_error(dev):
    png = (dev / "dota" / "P1888.png").read_bytes()
    with pytest.raises(DecodeError, match="unreadable image"):
        decode_image(png[:5000], "cut.png", layout="dota")
    with pytest.raises(DecodeError, match="unreadable image"):
        decode_image(b"this is not a picture", "text.png", layout="dota")
    tif = (dev / "ucm" / "agricultural00.tif").read_bytes()
    with pytest.raises(DecodeError, match="unreadable raster"):
        decode_image(tif[:3000], "cut.tif", layout="ucmerced")
    with pytest.raises(DecodeError, match="max_image_pixels"):
        decode_image(png, "big.png", layout="dota", max_pixels=1000)
    transparent = np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(DecodeError, match="no valid pixel"):
        decode_image(_png(transparent, "RGBA"), "t.png", layout="dota")


def test_choose_bands_rules():
    assert choose_bands(["red", "green", "blue"], "gaofen") == ([0, 1, 2], None, None)
    assert choose_bands(["blue", "green", "red"], "folder")[0] == [2, 1, 0]
    assert choose_bands(["red", "green", "blue", "alpha"], "dota")[:2] == ([0, 1, 2], 3)
    assert choose_bands(["gray"], "gaofen")[0] == [0]
    assert choose_bands(["gray", "undefined", "undefined", "undefined"], "gaofen")[0] == [2, 1, 0]
    assert choose_bands(["undefined"] * 10, "folder")[0] == [0, 1, 2]
    assert choose_bands(["undefined"] * 4, "gaofen", rgb_bands=(4, 3, 2))[0] == [3, 2, 1]
    # An override that does not fit the image falls back to the automatic rule.
    assert choose_bands(["gray"], "gaofen", rgb_bands=(3, 2, 1))[0] == [0]
    with pytest.raises(DecodeError, match="only an alpha band"):
        choose_bands(["alpha"], "folder")
