import math

import pytest

from ltchm.evaluation.bd import bd_delta, bd_table, bd_table_markdown, curve
from ltchm.evaluation.classical import JPEG2000, WebP
from ltchm.evaluation.report import average_points
from ltchm.evaluation.runner import evaluate


@pytest.fixture(scope="module")
def rd_rows(ucm_images) -> list[dict]:
    """Real averaged RD points of JPEG2000 and WebP on one UC-Merced image."""
    img = ucm_images["airplane00.tif"]
    records = evaluate([("airplane", img)], [JPEG2000(), WebP()], use_lpips=False, workers=1)
    return average_points(records)


def _renamed(rows: list[dict], codec: str, **scale) -> list[dict]:
    out = []
    for r in rows:
        if r["codec"] == "jpeg2000":
            r = {**r, "codec": codec, "label": codec}
            r["bpp"] *= scale.get("rate", 1.0)
            r["psnr"] += scale.get("psnr", 0.0)
            out.append(r)
    return out


def test_codec_against_itself_is_zero(rd_rows) -> None:
    rows = rd_rows + _renamed(rd_rows, "copy")
    table = {r["codec"]: r for r in bd_table(rows, "jpeg2000")}
    for codec in ("jpeg2000", "copy"):
        for key in ("bd_rate_psnr", "bd_psnr", "bd_rate_ms_ssim_db", "bd_ms_ssim_db"):
            assert table[codec][key] == pytest.approx(0.0, abs=1e-9), (codec, key)
    assert math.isfinite(table["webp"]["bd_rate_psnr"])
    assert table["jpeg2000"]["points"] == 6


def test_known_shifts(rd_rows) -> None:
    # 20 % fewer bits at every quality is a BD-rate of exactly -20 %; +0.5 dB at every rate
    # is a BD-PSNR of exactly +0.5 dB.
    cheaper = _renamed(rd_rows, "cheaper", rate=0.8)
    better = _renamed(rd_rows, "better", psnr=0.5)
    table = {r["codec"]: r for r in bd_table(rd_rows + cheaper + better, "jpeg2000")}
    assert table["cheaper"]["bd_rate_psnr"] == pytest.approx(-20.0, abs=1e-9)
    assert table["better"]["bd_psnr"] == pytest.approx(0.5, abs=1e-9)
    assert table["better"]["bd_rate_psnr"] < 0


def test_methods_agree_roughly(rd_rows) -> None:
    anchor, test = curve(rd_rows, "jpeg2000", "psnr"), curve(rd_rows, "webp", "psnr")
    values = [bd_delta(anchor, test, m)[1] for m in ("akima", "pchip", "cubic")]
    assert max(values) - min(values) < 0.2


def test_unusable_curves_are_nan_with_a_reason() -> None:
    anchor = ([0.1, 0.2, 0.4, 0.8], [28.0, 30.0, 32.0, 34.0])
    rate, delta, note = bd_delta(anchor, ([0.1, 0.2, 0.4], [28.0, 27.0, 33.0]))
    assert math.isnan(rate) and math.isnan(delta) and "not strictly increasing" in note
    rate, _, note = bd_delta(anchor, ([0.3], [31.0]))
    assert math.isnan(rate) and "needs >= 2" in note
    rate, _, note = bd_delta(anchor, ([0.1, 0.2], [28.0, math.inf]))
    assert math.isnan(rate) and "non-finite" in note
    rate, _, note = bd_delta(anchor, ([2.0, 4.0], [40.0, 44.0]))
    assert math.isnan(rate) and "do not overlap" in note


def test_missing_anchor_and_markdown(rd_rows) -> None:
    with pytest.raises(ValueError, match="anchor 'jpeg2000' was not evaluated"):
        bd_table([r for r in rd_rows if r["codec"] == "webp"], "jpeg2000")
    md = bd_table_markdown(bd_table(rd_rows, "jpeg2000"), "jpeg2000", "akima")
    assert "| WebP (libwebp) |" in md and "| JPEG2000 (OpenJPEG) | +0.00 %" in md
