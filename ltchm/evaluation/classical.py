"""The classical codecs of the paper's Sec. 3.3, through their reference command-line tools.

Every codec writes the real file its tool writes and the evaluation counts that file's bytes:

* ``jpeg2000``: OpenJPEG ``opj_compress -r RATIO -I`` (irreversible 9/7 wavelet, the lossy
  JPEG2000 path; the default 5/3 is the lossless one), raw ``.j2k`` codestream, RGB->YCC
  component transform (OpenJPEG's default for 3 components). ``-r`` is the ratio of the raw
  24-bit size to the codestream size, so bpp ~ 24 / ratio.
* ``webp``: libwebp ``cwebp -q Q -m 6`` (slowest, best method), no metadata. Lossy WebP is
  always YCbCr 4:2:0.
* ``avif``: libavif 0.11 ``avifenc -c aom --min Q --max Q -y 444``. libavif 0.11 has no
  ``--quality``; a quality ``q`` is mapped to the AV1 quantizer ``Q = ((100 - q) * 63 + 50) //
  100`` exactly as libavif >= 1.0 maps its ``-q``, and ``--min Q --max Q`` pins it (aom's
  constant-quality mode with cq-level Q). 4:4:4 is avifenc's own default for PNG input.
* ``hevc``: **HEVC intra (x265), BPG stand-in**. No BPG encoder is packaged, so we do what
  ``bpgenc -e x265`` does inside: x265 with BPG's defaults (preset ``veryslow`` = bpgenc's
  compression level 8, tune ``ssim``, intra only, no info SEI), fixed QP (bpgenc ``-q Q`` calls
  x265 with QP Q + 1), on full-range BT.601 YCbCr (BPG's ``ycbcr``), 4:4:4 by default as in
  CompressAI's BPG benchmark (4:2:0, BPG's own default, by config). RGB<->YCbCr conversion and
  decoding are ffmpeg's. The file is the raw Annex-B stream (VPS/SPS/PPS ~ 0.1 kB more than
  BPG's compact header), so at very low rates on small images it is slightly pessimistic.
* ``jpeg``: libjpeg-turbo ``cjpeg -quality Q -optimize`` (baseline, 4:2:0, optimised Huffman
  tables), decoded with ``djpeg``.

Tools run single-threaded; the evaluation runs images in parallel instead.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from PIL import Image

from ltchm.evaluation.codecs import CodecError, MissingBinaryError, Setting
from ltchm.imageio import Image8

__all__ = ["AVIF", "HEVC", "JPEG", "JPEG2000", "WebP", "avif_quantizer"]


def avif_quantizer(quality: int) -> int:
    """libavif >= 1.0's mapping of ``--quality`` 0..100 to the AV1 quantizer 0..63."""
    if not 0 <= quality <= 100:
        raise ValueError(f"AVIF quality must be in 0..100, got {quality}")
    return ((100 - quality) * 63 + 50) // 100


def _write_image(path: Path, img: Image8) -> None:
    # Inputs are scratch files: PNG at the fastest zlib level.
    level = 1 if path.suffix == ".png" else None
    if level is None:
        Image.fromarray(img, mode="RGB").save(path)
    else:
        Image.fromarray(img, mode="RGB").save(path, compress_level=level)


def _read_image(path: Path, what: str) -> Image8:
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != "RGB":
                raise CodecError(f"{what}: decoder wrote a {im.mode} image, expected RGB")
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise CodecError(f"{what}: the decoder wrote no image") from None


@dataclass(frozen=True)
class _ToolCodec:
    """A codec run through command-line tools; subclasses set the tools and the commands."""

    name: ClassVar[str]
    label: ClassVar[str]
    setting_name: ClassVar[str]
    parallel: ClassVar[bool] = True
    # tool field -> Debian package that provides it
    packages: ClassVar[dict[str, str]]

    def ladder(self) -> list[Setting]:
        raise NotImplementedError  # each codec's settings

    def _tools(self) -> list[tuple[str, str]]:
        return [(getattr(self, field), pkg) for field, pkg in self.packages.items()]

    def check(self) -> None:
        for binary, package in self._tools():
            if shutil.which(binary) is None:
                raise MissingBinaryError(self.name, binary, package)

    def _run(self, args: Sequence[object], setting: Setting, stdin: bytes | None = None) -> bytes:
        cmd = [str(c) for c in args]
        try:
            proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
        except FileNotFoundError:
            package = dict(self._tools()).get(cmd[0], "?")
            raise MissingBinaryError(self.name, cmd[0], package) from None
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip()[-800:]
            raise CodecError(
                f"{self.name} at {self.setting_name}={setting}: {' '.join(cmd)} exited with "
                f"{proc.returncode}: {tail}"
            )
        return proc.stdout

    def versions(self) -> dict[str, str]:
        out = {}
        for binary, _ in self._tools():
            out[binary] = _tool_version(binary)
        return out

    def encode(self, img: Image8, setting: Setting) -> bytes:
        with tempfile.TemporaryDirectory(prefix="ltchm-eval-") as tmp:
            return self._encode(Path(tmp), img, setting)

    def decode(self, data: bytes, setting: Setting, shape: tuple[int, int]) -> Image8:
        with tempfile.TemporaryDirectory(prefix="ltchm-eval-") as tmp:
            return self._decode(Path(tmp), data, setting, shape)

    def _encode(self, tmp: Path, img: Image8, setting: Setting) -> bytes:
        raise NotImplementedError

    def _decode(self, tmp: Path, data: bytes, setting: Setting, shape: tuple[int, int]) -> Image8:
        raise NotImplementedError


# How each tool reports its version.
_VERSION_ARGS = {
    "opj_compress": ["-h"],
    "opj_decompress": ["-h"],
    "cwebp": ["-version"],
    "dwebp": ["-version"],
    "avifenc": ["--version"],
    "avifdec": ["--version"],
    "x265": ["--version"],
    "ffmpeg": ["-version"],
    "cjpeg": ["-version"],
    "djpeg": ["-version"],
}


def _tool_version(binary: str) -> str:
    try:
        proc = subprocess.run(
            [binary, *_VERSION_ARGS.get(Path(binary).name, ["--version"])],
            capture_output=True,
            check=False,
            timeout=30,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (proc.stdout + proc.stderr).decode(errors="replace")
    for line in text.splitlines():
        if re.search(r"\d+\.\d+", line) and re.search(r"version|^\d|^ffmpeg|library v", line, re.I):
            return re.sub(r"^\s*(x265 )?\[info\]:\s*", "", line).strip()[:200]
    return text.strip().splitlines()[0][:200] if text.strip() else "unknown"


@dataclass(frozen=True)
class JPEG2000(_ToolCodec):
    """JPEG2000 (OpenJPEG, 9/7 wavelet) at compression ratios, the paper's anchor."""

    name: ClassVar[str] = "jpeg2000"
    label: ClassVar[str] = "JPEG2000 (OpenJPEG)"
    setting_name: ClassVar[str] = "ratio"
    packages: ClassVar[dict[str, str]] = {
        "encoder": "libopenjp2-tools",
        "decoder": "libopenjp2-tools",
    }

    ratios: tuple[float, ...] = (20, 30, 40, 60, 110, 160)
    encoder: str = "opj_compress"
    decoder: str = "opj_decompress"

    def ladder(self) -> list[Setting]:
        # a higher ratio is a lower rate; 20.0 from YAML is shown as 20
        return [int(r) if float(r).is_integer() else r for r in sorted(self.ratios, reverse=True)]

    def _encode(self, tmp: Path, img: Image8, setting: Setting) -> bytes:
        src, out = tmp / "in.ppm", tmp / "out.j2k"
        _write_image(src, img)
        # OpenJPEG needs 2**(resolutions - 1) <= the smaller side; keep its default 6 when it can.
        levels = min(6, int(math.log2(min(img.shape[:2]))) + 1)
        self._run(
            [self.encoder, "-i", src, "-o", out, "-r", f"{float(setting):g}", "-I", "-n", levels],
            setting,
        )
        return out.read_bytes()

    def _decode(self, tmp: Path, data: bytes, setting: Setting, shape: tuple[int, int]) -> Image8:
        src, out = tmp / "in.j2k", tmp / "out.ppm"
        src.write_bytes(data)
        self._run([self.decoder, "-i", src, "-o", out], setting)
        return _read_image(out, f"{self.name} at ratio {setting}")


@dataclass(frozen=True)
class WebP(_ToolCodec):
    """WebP (libwebp) at ``cwebp -q`` qualities."""

    name: ClassVar[str] = "webp"
    label: ClassVar[str] = "WebP (libwebp)"
    setting_name: ClassVar[str] = "quality"
    packages: ClassVar[dict[str, str]] = {"encoder": "webp", "decoder": "webp"}

    qualities: tuple[int, ...] = (1, 4, 20, 35, 60, 80)
    method: int = 6
    encoder: str = "cwebp"
    decoder: str = "dwebp"

    def ladder(self) -> list[Setting]:
        return sorted(self.qualities)

    def _encode(self, tmp: Path, img: Image8, setting: Setting) -> bytes:
        src, out = tmp / "in.png", tmp / "out.webp"
        _write_image(src, img)
        cmd = [self.encoder, "-quiet", "-q", setting, "-m", self.method, "-metadata", "none"]
        self._run([*cmd, src, "-o", out], setting)
        return out.read_bytes()

    def _decode(self, tmp: Path, data: bytes, setting: Setting, shape: tuple[int, int]) -> Image8:
        src, out = tmp / "in.webp", tmp / "out.ppm"
        src.write_bytes(data)
        self._run([self.decoder, "-quiet", src, "-ppm", "-o", out], setting)
        return _read_image(out, f"{self.name} at quality {setting}")


@dataclass(frozen=True)
class AVIF(_ToolCodec):
    """AVIF (libavif 0.11 + aom) at libavif-1.0-style qualities, YCbCr 4:4:4."""

    name: ClassVar[str] = "avif"
    label: ClassVar[str] = "AVIF (libavif, aom)"
    setting_name: ClassVar[str] = "quality"
    packages: ClassVar[dict[str, str]] = {"encoder": "libavif-bin", "decoder": "libavif-bin"}

    qualities: tuple[int, ...] = (10, 20, 30, 40, 50, 60)
    speed: int = 6
    encoder: str = "avifenc"
    decoder: str = "avifdec"

    def ladder(self) -> list[Setting]:
        return sorted(self.qualities)

    def _encode(self, tmp: Path, img: Image8, setting: Setting) -> bytes:
        src, out = tmp / "in.png", tmp / "out.avif"
        _write_image(src, img)
        q = avif_quantizer(int(setting))
        cmd = [self.encoder, "-c", "aom", "-s", self.speed, "-j", 1, "-y", 444, "-d", 8]
        self._run([*cmd, "--min", q, "--max", q, "--ignore-icc", src, out], setting)
        return out.read_bytes()

    def _decode(self, tmp: Path, data: bytes, setting: Setting, shape: tuple[int, int]) -> Image8:
        src, out = tmp / "in.avif", tmp / "out.png"
        src.write_bytes(data)
        self._run([self.decoder, "-j", 1, "-d", 8, src, out], setting)
        return _read_image(out, f"{self.name} at quality {setting}")


# Full-range BT.601 YCbCr (BPG's "ycbcr", JPEG's), converted by swscale with exact rounding.
_SWS = "accurate_rnd+full_chroma_int+full_chroma_inp"


@dataclass(frozen=True)
class HEVC(_ToolCodec):
    """HEVC intra through x265 with BPG's settings: a stand-in for BPG, labelled as such."""

    name: ClassVar[str] = "hevc"
    label: ClassVar[str] = "HEVC intra (x265), BPG stand-in"
    setting_name: ClassVar[str] = "qp"
    packages: ClassVar[dict[str, str]] = {"encoder": "x265", "converter": "ffmpeg"}

    qps: tuple[int, ...] = (25, 30, 35, 40, 43, 46)
    preset: str = "veryslow"
    tune: str = "ssim"
    chroma: Literal["444", "420"] = "444"
    encoder: str = "x265"
    converter: str = "ffmpeg"

    def ladder(self) -> list[Setting]:
        return sorted(self.qps, reverse=True)  # a higher QP is a lower rate

    def _padded(self, shape: tuple[int, int]) -> tuple[int, int]:
        # 4:2:0 HEVC cannot code odd sizes; pad by edge replication and crop after decoding.
        H, W = shape
        return (H + H % 2, W + W % 2) if self.chroma == "420" else (H, W)

    def _encode(self, tmp: Path, img: Image8, setting: Setting) -> bytes:
        H, W = self._padded((img.shape[0], img.shape[1]))
        if img.shape[:2] != (H, W):
            img = np.pad(img, ((0, H - img.shape[0]), (0, W - img.shape[1]), (0, 0)), "edge")
        pix = f"yuv{self.chroma}p"
        yuv = self._run(
            [
                *(self.converter, "-hide_banner", "-loglevel", "error", "-f", "rawvideo"),
                *("-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-i", "-"),
                *("-vf", f"scale=out_color_matrix=bt601:out_range=full:flags={_SWS}"),
                *("-pix_fmt", pix, "-f", "rawvideo", "-"),
            ],
            setting,
            stdin=np.ascontiguousarray(img).tobytes(),
        )
        out = tmp / "out.hevc"
        self._run(
            [
                *(self.encoder, "--input", "-", "--input-res", f"{W}x{H}"),
                *("--input-csp", f"i{self.chroma}", "--fps", 25, "--frames", 1),
                *("--preset", self.preset, "--tune", self.tune, "--qp", setting, "--keyint", 1),
                *("--no-info", "--range", "full", "--colormatrix", "bt470bg"),
                *("--pools", 1, "--frame-threads", 1, "--log-level", "error", "--no-progress"),
                *("--output", out),
            ],
            setting,
            stdin=yuv,
        )
        return out.read_bytes()

    def _decode(self, tmp: Path, data: bytes, setting: Setting, shape: tuple[int, int]) -> Image8:
        src = tmp / "in.hevc"
        src.write_bytes(data)
        H, W = self._padded(shape)
        rgb = self._run(
            [
                *(self.converter, "-hide_banner", "-loglevel", "error", "-f", "hevc", "-i", src),
                *("-vf", f"scale=in_color_matrix=bt601:in_range=full:flags={_SWS}"),
                *("-pix_fmt", "rgb24", "-f", "rawvideo", "-"),
            ],
            setting,
        )
        if len(rgb) != H * W * 3:
            raise CodecError(
                f"{self.name} at qp {setting}: decoded {len(rgb)} bytes, expected {W}x{H}x3"
            )
        return np.frombuffer(rgb, np.uint8).reshape(H, W, 3)[: shape[0], : shape[1]].copy()


@dataclass(frozen=True)
class JPEG(_ToolCodec):
    """JPEG (libjpeg-turbo ``cjpeg``/``djpeg``), baseline 4:2:0 with optimised Huffman."""

    name: ClassVar[str] = "jpeg"
    label: ClassVar[str] = "JPEG (libjpeg-turbo)"
    setting_name: ClassVar[str] = "quality"
    packages: ClassVar[dict[str, str]] = {
        "encoder": "libjpeg-turbo-progs",
        "decoder": "libjpeg-turbo-progs",
    }

    qualities: tuple[int, ...] = (5, 10, 20, 40, 60, 80)
    encoder: str = "cjpeg"
    decoder: str = "djpeg"

    def ladder(self) -> list[Setting]:
        return sorted(self.qualities)

    def _encode(self, tmp: Path, img: Image8, setting: Setting) -> bytes:
        src, out = tmp / "in.ppm", tmp / "out.jpg"
        _write_image(src, img)
        self._run([self.encoder, "-quality", setting, "-optimize", "-outfile", out, src], setting)
        return out.read_bytes()

    def _decode(self, tmp: Path, data: bytes, setting: Setting, shape: tuple[int, int]) -> Image8:
        src, out = tmp / "in.jpg", tmp / "out.ppm"
        src.write_bytes(data)
        self._run([self.decoder, "-pnm", "-outfile", out, src], setting)
        return _read_image(out, f"{self.name} at quality {setting}")
