import csv
import json
import math
from pathlib import Path

import pytest

from ltchm.evaluation.report import RD_FIELDS, average_points, json_ready, write_report
from ltchm.evaluation.runner import RECORD_FIELDS


def _records() -> list[dict]:
    """Two codecs x 3 settings x 2 images; image 'small' has no MS-SSIM, nobody has LPIPS."""
    out = []
    for codec, label, base in (("jpeg2000", "JPEG2000 (OpenJPEG)", 0.0), ("webp", "WebP", 0.4)):
        for k, setting in enumerate((10, 20, 30)):
            for image, offset, msssim in (("big", 0.0, 0.90 + 0.02 * k), ("small", 1.0, math.nan)):
                bpp = 0.2 * (k + 1) + 0.01 * offset
                out.append(
                    {
                        "image": image,
                        "width": 256,
                        "height": 256,
                        "codec": codec,
                        "label": label,
                        "setting_name": "quality",
                        "setting": setting,
                        "bytes": int(bpp * 256 * 256 / 8),
                        "bpp": bpp,
                        "psnr": 28 + 3 * k + base + offset,
                        "ms_ssim": msssim,
                        "ms_ssim_db": -10 * math.log10(1 - msssim),
                        "lpips": math.nan,
                        "vifp": 0.3 + 0.1 * k,
                        "encode_s": 0.01,
                        "decode_s": 0.01,
                        "notes": "ms_ssim: undefined" if image == "small" else "",
                    }
                )
    return out


def test_average_points() -> None:
    rows = average_points(_records())
    assert len(rows) == 6 and set(rows[0]) == set(RD_FIELDS)
    r = next(r for r in rows if r["codec"] == "webp" and r["setting"] == 20)
    assert r["images"] == 2
    assert r["bpp"] == pytest.approx((0.4 + 0.41) / 2)
    assert r["psnr"] == pytest.approx((31.4 + 32.4) / 2)
    assert r["ms_ssim"] == pytest.approx(0.92) and r["n_ms_ssim"] == 1
    assert r["ms_ssim_db"] == pytest.approx(-10 * math.log10(0.08))
    assert math.isnan(r["lpips"]) and r["n_lpips"] == 0
    lossless = [{**_records()[0], "psnr": math.inf}, _records()[1]]
    assert average_points(lossless)[0]["psnr"] == math.inf


def test_json_ready() -> None:
    assert json_ready({"a": [math.nan, math.inf, -math.inf, 1.5, "x", None]}) == {
        "a": [None, "inf", "-inf", 1.5, "x", None]
    }


def test_write_report(tmp_path: Path) -> None:
    records = _records()
    summary = {"data": "synthetic", "images": 2, "title": "t", "notes": ["a note"]}
    out = tmp_path / "out"
    result = write_report(out, records, summary, "jpeg2000", "akima", learned=["webp"])
    with open(out / "points.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and list(rows[0]) == list(RECORD_FIELDS)
    assert rows[0]["lpips"] == "nan"
    strict = {"parse_constant": lambda c: pytest.fail(f"non-standard JSON constant {c}")}
    points = json.loads((out / "points.json").read_text(), **strict)
    assert len(points) == 12 and points[0]["lpips"] is None
    rd = json.loads((out / "rd.json").read_text(), **strict)
    assert len(rd) == 6
    with open(out / "bd.csv") as f:
        bd = {r["codec"]: r for r in csv.DictReader(f)}
    assert float(bd["jpeg2000"]["bd_rate_psnr"]) == pytest.approx(0.0, abs=1e-9)
    assert float(bd["webp"]["bd_psnr"]) == pytest.approx(0.4, abs=1e-6)
    assert "| WebP |" in (out / "bd.md").read_text()
    # LPIPS is nan everywhere: no empty LPIPS plot.
    names = sorted(p.name for p in result["plots"])
    assert names == sorted(
        f"rd_{m}.{e}" for m in ("psnr", "ms_ssim_db", "vifp") for e in ("png", "svg")
    )
    for p in result["plots"]:
        head = p.read_bytes()[:100]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else b"<svg" in p.read_bytes()
    report = (out / "report.md").read_text()
    assert "![rd_psnr](rd_psnr.png)" in report and "a note" in report
    assert json.loads((out / "summary.json").read_text())["data"] == "synthetic"
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_report_without_anchor(tmp_path: Path) -> None:
    records = [r for r in _records() if r["codec"] == "webp"]
    result = write_report(tmp_path, records, {"data": "x"}, "jpeg2000")
    assert result["bd"] == []
    assert "anchor 'jpeg2000' was not among" in (tmp_path / "bd.md").read_text()
