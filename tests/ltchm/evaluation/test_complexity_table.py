import io

import numpy as np
from PIL import Image
from torch import nn

from ltchm.evaluation.classical import JPEG, WebP
from ltchm.evaluation.codecs import Codec
from ltchm.evaluation.complexity import (
    COMPLEXITY_FIELDS,
    complexity_markdown,
    complexity_table,
    crop_256,
    device_description,
)
from ltchm.zoo import get_model


class ModelBackedPNG:
    """A codec with a model behind it, as the learned adapter has: a real zoo network for the
    table's params/FLOPs columns; the bytes are lossless PNG."""

    name = "png-model"
    label = "PNG with a model"
    setting_name = "model"
    parallel = False
    device = "cpu"

    def __init__(self) -> None:
        self.net = get_model("ltchm-baseline", N=16)

    def ladder(self) -> list[str]:
        return ["n16"]

    def check(self) -> None:
        pass

    def versions(self) -> dict[str, str]:
        return {}

    def model(self, setting: str) -> nn.Module:
        return self.net

    def encode(self, img: np.ndarray, setting: str) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        return buf.getvalue()

    def decode(self, data: bytes, setting: str, shape: tuple[int, int]) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_crop_256(ucm_images, dota_crop) -> None:
    img = ucm_images["airplane00.tif"]
    assert np.array_equal(crop_256(img), img)
    c = crop_256(dota_crop)
    assert c.shape == (256, 256, 3)
    top, left = (287 - 256) // 2, (301 - 256) // 2
    assert np.array_equal(c, dota_crop[top : top + 256, left : left + 256])
    small = dota_crop[:100, :300]
    padded = crop_256(small)
    assert padded.shape == (256, 256, 3)
    assert np.array_equal(padded[-1], padded[99])  # edge replication below the image


def test_complexity_table(dota_crop) -> None:
    png = ModelBackedPNG()
    assert isinstance(png, Codec)
    rows = complexity_table([JPEG(), WebP(), png], dota_crop, repeats=1)
    assert [r["codec"] for r in rows] == ["jpeg", "webp", "png-model"]
    for r in rows:
        assert set(r) == set(COMPLEXITY_FIELDS)
        assert r["encode_ms"] > 0 and r["decode_ms"] > 0 and r["bpp"] > 0
    jpeg, webp, model_row = rows
    assert jpeg["setting"] == JPEG().ladder()[3] and jpeg["params"] is None
    assert webp["setting"] == WebP().ladder()[3] and webp["flops"] is None
    assert model_row["params"] == sum(p.numel() for p in png.net.parameters())
    assert model_row["flops"] > 1e8  # ~1 GFLOP at N=16 on 256x256
    assert model_row["bpp"] > jpeg["bpp"]  # lossless PNG against JPEG at quality 40
    assert "cores" in model_row["device"] and device_description("cpu") == jpeg["device"]
    md = complexity_markdown(rows)
    assert "| PNG with a model | n16 |" in md and "| JPEG (libjpeg-turbo) | 40 | - | - |" in md
