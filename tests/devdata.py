"""Stand-ins for ``../shared/data/dev``, generated where the development data are absent.

The same layout and file names (``ucm/``, ``dota/``, ``scenes/``, ``sar/``) and the
properties the tests rely on: sizes, band counts, data types, CRSs, nodata and alpha masks,
and four tiles that merge bit-exactly back into ``rasterio_RGB.byte.tif``. Real pixels come
from the public-domain samples in ``samples/`` where they have them (UC-Merced, the Landsat
and NAIP scenes); the others are textured synthetic rasters. The development data, when
present, are used instead: they add real cases, they never gate a test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.windows import Window

from ltchm.paths import SAMPLES

__all__ = ["make_dev_standins"]

_UTM18 = "+proj=utm +zone=18 +ellps=WGS84 +units=m"
_GEOS = "+proj=geos +lon_0=140.7 +h=35785863 +x_0=0 +y_0=0 +a=6378137 +rf=298.257024882273"
_TMERC = "+proj=tmerc +lat_0=40.07 +lon_0=116.6 +k=0.9996 +x_0=400000 +y_0=100000 +ellps=WGS84"


def _texture(rng: np.random.Generator, h: int, w: int, bands: int, top: float) -> np.ndarray:
    """Smooth structure plus fine noise per band: compressible, but not trivially."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for b in range(bands):
        f1, f2 = 7.0 + 3 * b, 11.0 + 2 * b
        smooth = np.sin(xx / f1 + b) * np.cos(yy / f2 - b) + 0.5 * np.sin((xx + yy) / 23.0)
        noise = rng.normal(0, 0.15, (h, w))
        v = (smooth - smooth.min()) / (np.ptp(smooth) or 1.0) * 0.85 + 0.05 + noise * 0.1
        out.append(np.clip(v, 0, 1) * top)
    return np.stack(out)


def _write(path: Path, data: np.ndarray, crs: str, transform, **profile) -> None:
    count, h, w = data.shape
    profile |= {"width": w, "height": h, "count": count, "dtype": data.dtype}
    with rasterio.open(path, "w", driver="GTiff", crs=crs, transform=transform, **profile) as dst:
        dst.write(data)


def _scenes(dest: Path, rng: np.random.Generator) -> None:
    src = SAMPLES / "scenes"
    for name in ("rasterio_RGB.byte.tif", "riocolor_rgb16.tif",
                 "opengeos_naip_m_4709963_se_14_1_20100629.tif"):  # fmt: skip
        shutil.copyfile(src / name, dest / name)
    # four tiles overlapping by one pixel, as rasterio's rgb1..4 do: they merge back exactly
    with rasterio.open(dest / "rasterio_RGB.byte.tif") as full:
        for i, (col, row) in enumerate(((0, 0), (399, 0), (0, 399), (399, 399)), start=1):
            win = Window(col, row, min(400, full.width - col), min(400, full.height - row))
            profile = full.profile | {
                "width": int(win.width), "height": int(win.height),
                "transform": full.window_transform(win), "crs": _UTM18,
            }  # fmt: skip
            with rasterio.open(dest / f"rasterio_rgb{i}.tif", "w", **profile) as dst:
                dst.write(full.read(window=win))
                dst.colorinterp = full.colorinterp
    # 10-band 16-bit multispectral, one band of little range (mostly noise)
    ms = _texture(rng, 256, 256, 10, 3000.0) + 200
    ms[7] = 1000 + rng.integers(0, 422, (256, 256))
    _write(dest / "paddlers_ssst_multispectral.tif", ms.astype(np.uint16), "EPSG:32651",
           from_origin(225000, -1095000, 30, 30))  # fmt: skip
    pan = _texture(rng, 600, 600, 1, 2047.0) + 100
    _write(dest / "solaris_pan1.tif", pan.astype(np.uint16), "EPSG:32631",
           from_origin(593270.29, 5747657.42, 0.5, 0.5))  # fmt: skip
    # RGBA drone orthophoto: alpha 0 outside an irregular footprint
    rgb = _texture(rng, 758, 686, 3, 255.0).astype(np.uint8)
    yy, xx = np.mgrid[0:758, 0:686]
    alpha = np.where((xx - 343) ** 2 / 330**2 + (yy - 379) ** 2 / 360**2 < 1, 255, 0)
    rgba = np.concatenate([rgb, alpha[None].astype(np.uint8)])
    path = dest / "riotiler_pix4d_alpha_nodata.tif"
    _write(path, rgba, "EPSG:32750", from_origin(297463.30, 9050677.06, 0.35272, 0.35272))
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                           ColorInterp.alpha]  # fmt: skip
    # geostationary projection, the Earth's disk on a nodata background
    geo = _texture(rng, 1100, 900, 3, 254.0).astype(np.uint8) + 1
    yy, xx = np.mgrid[0:1100, 0:900]
    geo[:, (xx - 450) ** 2 + (yy - 550) ** 2 > 440**2] = 0
    path = dest / "riocogeo_image_geos.tif"
    _write(path, geo, _GEOS, from_origin(-4500499.97, 5499999.97, 10001.11, 10000.0), nodata=0)
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]


def _dota(dest: Path, rng: np.random.Generator) -> None:
    """PNGs of the DOTA sizes cut from the Landsat and NAIP samples (one RGBA)."""
    with rasterio.open(SAMPLES / "scenes" / "opengeos_naip_m_4709963_se_14_1_20100629.tif") as s:
        naip = np.moveaxis(s.read([1, 2, 3]), 0, -1)
    big = np.concatenate([naip, naip[::-1]], axis=0)  # 1446 x 934
    big = np.concatenate([big, big[:, ::-1]], axis=1)  # 1446 x 1868
    for name, (w, h) in {"P0706.png": (1111, 1182), "P1888.png": (712, 557),
                         "P0130.png": (728, 860)}.items():  # fmt: skip
        y, x = int(rng.integers(0, big.shape[0] - h)), int(rng.integers(0, big.shape[1] - w))
        Image.fromarray(np.ascontiguousarray(big[y : y + h, x : x + w])).save(dest / name)
    crop = big[:294, :285]
    alpha = np.full((294, 285, 1), 255, np.uint8)
    alpha[:, 250:] = 0  # the image part beyond the DOTA tile's edge
    Image.fromarray(np.concatenate([crop, alpha], axis=-1), "RGBA").save(
        dest / "P0004__1__0___0.png"
    )


def _sar(dest: Path, rng: np.random.Generator) -> None:
    for name, size in (("gfc2021_sar_test_1.tif", 1024), ("gfc2021_sar_test_11.tif", 600)):
        speckle = rng.gamma(1.0, 1.0, (size, size)) * _texture(rng, size, size, 1, 1.0)[0]
        img = np.clip(speckle * 120, 0, 255).astype(np.uint8)[None]
        _write(dest / name, img, _TMERC, from_origin(393024.98, 106622.04, 0.5, 0.5))


def make_dev_standins(root: Path) -> Path:
    """Write the stand-ins under ``root`` (once); return it."""
    if (root / ".complete").is_file():
        return root
    rng = np.random.default_rng(2026)
    for sub in ("ucm", "dota", "scenes", "sar"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for p in sorted((SAMPLES / "ucm").glob("*.tif")):
        shutil.copyfile(p, root / "ucm" / p.name)
    _scenes(root / "scenes", rng)
    _dota(root / "dota", rng)
    _sar(root / "sar", rng)
    (root / ".complete").write_text("generated by tests/devdata.py\n")
    return root
