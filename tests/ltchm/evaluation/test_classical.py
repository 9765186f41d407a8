import itertools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ltchm.config import load_config
from ltchm.evaluation.classical import AVIF, HEVC, JPEG, JPEG2000, WebP, avif_quantizer
from ltchm.evaluation.codecs import (
    CLASSICAL,
    Codec,
    CodecError,
    MissingBinaryError,
    build_classical,
    roundtrip,
)
from ltchm.evaluation.metrics import to_tensor
from ltchm.evaluation.runner import evaluate
from ltchm.metrics import psnr

# How each codec's real file starts.
MAGIC = {
    "jpeg2000": lambda b: b[:4] == b"\xff\x4f\xff\x51",  # SOC + SIZ: a J2K codestream
    "webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "avif": lambda b: b[4:12] == b"ftypavif",
    "hevc": lambda b: b[:4] == b"\x00\x00\x00\x01" and (b[4] >> 1) & 0x3F == 32,  # VPS NAL
    "jpeg": lambda b: b[:2] == b"\xff\xd8" and b[-2:] == b"\xff\xd9",
}


@pytest.fixture(scope="module")
def codecs() -> list[Codec]:
    return build_classical(CLASSICAL, load_config().evaluate)


def test_registry_and_protocol(codecs) -> None:
    assert [c.name for c in codecs] == list(CLASSICAL)
    for c in codecs:
        assert isinstance(c, Codec)
        c.check()
        assert c.versions() and all(v != "unavailable" for v in c.versions().values())
    hevc = next(c for c in codecs if c.name == "hevc")
    assert hevc.label == "HEVC intra (x265), BPG stand-in"
    with pytest.raises(ValueError, match="bpg"):
        build_classical(["jpeg", "bpg"], load_config().evaluate)


def test_ladders_are_monotonic_on_dev_images(codecs, ucm_images, dota_crop) -> None:
    images = {**ucm_images, "dota_crop": dota_crop}
    for codec in codecs:
        for name, img in images.items():
            bpps, psnrs = [], []
            for setting in codec.ladder():
                data = codec.encode(img, setting)
                assert MAGIC[codec.name](data), (codec.name, setting, data[:12])
                dec = codec.decode(data, setting, img.shape[:2])
                assert dec.shape == img.shape and dec.dtype == np.uint8
                bpps.append(len(data) * 8 / (img.shape[0] * img.shape[1]))
                psnrs.append(psnr(to_tensor(img), to_tensor(dec)))
            where = f"{codec.name} on {name}: bpp {bpps}, psnr {psnrs}"
            assert all(b1 > b0 for b0, b1 in itertools.pairwise(bpps)), where
            # PSNR broadly rises: never falls by more than a hair, and a lot overall.
            assert all(p1 > p0 - 0.1 for p0, p1 in itertools.pairwise(psnrs)), where
            assert psnrs[-1] > psnrs[0] + 3, where


def test_jpeg2000_rate_is_the_ratio_of_real_bytes(ucm_images) -> None:
    img = ucm_images["airplane00.tif"]
    raw = img.size  # bytes of the 24-bit image
    for ratio in (20, 60, 160):
        n, _ = roundtrip(JPEG2000(), img, ratio)
        assert n == pytest.approx(raw / ratio, rel=0.03)


def test_hevc_420_codes_odd_sizes(dota_crop) -> None:
    codec = HEVC(qps=(30,), chroma="420")
    n444, _ = roundtrip(HEVC(qps=(30,)), dota_crop, 30)
    n420, dec420 = roundtrip(codec, dota_crop, 30)
    assert dec420.shape == dota_crop.shape
    assert n420 < n444  # half the chroma samples
    assert psnr(to_tensor(dota_crop), to_tensor(dec420)) > 25


def test_avif_quality_mapping() -> None:
    # libavif >= 1.0: quantizer = ((100 - quality) * 63 + 50) / 100
    assert [avif_quantizer(q) for q in (0, 10, 50, 60, 100)] == [63, 57, 32, 25, 0]
    with pytest.raises(ValueError):
        avif_quantizer(101)


def test_corrupt_stream_is_a_codec_error(ucm_images) -> None:
    img = ucm_images["forest00.tif"]
    for codec in (JPEG2000(), WebP(), AVIF(), JPEG()):
        with pytest.raises(CodecError, match=codec.name):
            codec.decode(b"\x00" * 64, codec.ladder()[0], img.shape[:2])


def test_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch, ucm_images) -> None:
    missing = JPEG2000(encoder="opj_compress_not_installed")
    with pytest.raises(MissingBinaryError, match="opj_compress_not_installed") as err:
        missing.check()
    assert "libopenjp2-tools" in str(err.value)
    with pytest.raises(MissingBinaryError, match="libopenjp2-tools"):
        missing.encode(ucm_images["forest00.tif"], 20)
    # Every codec names its tool and Debian package when PATH lacks them.
    expected = {
        "jpeg2000": ("opj_compress", "libopenjp2-tools"),
        "webp": ("cwebp", "webp"),
        "avif": ("avifenc", "libavif-bin"),
        "hevc": ("x265", "x265"),
        "jpeg": ("cjpeg", "libjpeg-turbo-progs"),
    }
    monkeypatch.setenv("PATH", str(tmp_path))
    for codec in build_classical(CLASSICAL, load_config().evaluate):
        binary, package = expected[codec.name]
        with pytest.raises(MissingBinaryError) as err:
            codec.check()
        assert (err.value.binary, err.value.package) == (binary, package)
        assert f"'{binary}'" in str(err.value) and f"apt-get install {package}" in str(err.value)
    # ffmpeg alone missing: HEVC still names it.
    (tmp_path / "x265").symlink_to(shutil.which("x265", path=os.defpath + ":/usr/bin"))
    with pytest.raises(MissingBinaryError, match=r"'ffmpeg'.*'ffmpeg'"):
        HEVC().check()
    # The evaluation refuses to start rather than failing half-way.
    with pytest.raises(MissingBinaryError, match="cwebp"):
        evaluate([("a", ucm_images["forest00.tif"])], [WebP()], use_lpips=False, workers=1)


def test_config_file_and_validation() -> None:
    from ltchm.config import ConfigError
    from ltchm.paths import REPO_ROOT

    cfg = load_config(REPO_ROOT / "configs" / "evaluate.yaml").evaluate
    assert cfg == load_config().evaluate.model_copy(
        update={"jpeg2000_ratios": tuple(float(r) for r in cfg.jpeg2000_ratios)}
    )
    jp2, *_ = build_classical(["jpeg2000"], cfg)
    assert jp2.ladder() == [160, 110, 60, 40, 30, 20]
    with pytest.raises(ConfigError, match="hevc_qps must be distinct values in"):
        load_config(overrides={"evaluate.hevc_qps": [30, 30]})
    with pytest.raises(ConfigError, match=r"evaluate\.hevc_chroma"):
        load_config(overrides={"evaluate.hevc_chroma": "422"})
