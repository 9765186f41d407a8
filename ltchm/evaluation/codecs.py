"""The codec interface of the evaluation, its errors, and the registry of codec names.

A codec is anything with a ``name``, a ladder of settings and ``encode``/``decode`` on 8-bit
RGB arrays: the classical codecs (:mod:`ltchm.evaluation.classical`) run command-line tools,
the learned one (:mod:`ltchm.evaluation.learned`) wraps ``ltchm.codec.ImageCodec``. The
evaluation measures bpp from the bytes ``encode`` returns: the complete file that tool writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from ltchm.imageio import Image8

if TYPE_CHECKING:
    from ltchm.config import EvaluateConfig

__all__ = [
    "CLASSICAL",
    "Codec",
    "CodecError",
    "MissingBinaryError",
    "Setting",
    "build_classical",
    "roundtrip",
]

Setting = int | float | str


class CodecError(RuntimeError):
    """A codec failed on an image (the message names the codec, setting and tool output)."""


class MissingBinaryError(CodecError):
    """A codec's command-line tool is not installed."""

    def __init__(self, codec: str, binary: str, package: str) -> None:
        self.codec, self.binary, self.package = codec, binary, package
        super().__init__(
            f"codec {codec!r} needs the program {binary!r}, which is not on PATH; install the "
            f"Debian package {package!r} (apt-get install {package}, or run "
            "scripts/bootstrap.sh)"
        )

    def __reduce__(self) -> tuple[type[MissingBinaryError], tuple[str, str, str]]:
        # raised in worker processes: must survive pickling
        return type(self), (self.codec, self.binary, self.package)


@runtime_checkable
class Codec(Protocol):
    """What the evaluation needs of a codec.

    Attributes:
        name: key used on the command line and in the outputs (``jpeg2000``).
        label: honest display name (``"HEVC intra (x265), BPG stand-in"``).
        setting_name: what a setting is (``ratio``, ``quality``, ``qp``, ``model``).
        parallel: whether images may be coded in worker processes (command-line tools: yes;
            a torch model that already uses every core or the accelerator: no).
    """

    @property
    def name(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def setting_name(self) -> str: ...

    @property
    def parallel(self) -> bool: ...

    def ladder(self) -> Sequence[Setting]:
        """The settings to evaluate, from the lowest rate to the highest."""
        ...

    def check(self) -> None:
        """Raise :class:`MissingBinaryError` (or another :class:`CodecError`) if unusable."""
        ...

    def versions(self) -> dict[str, str]:
        """Versions of the tools or model behind the codec, for provenance."""
        ...

    def encode(self, img: Image8, setting: Setting) -> bytes:
        """(H, W, 3) uint8 -> the bytes of the complete compressed file."""
        ...

    def decode(self, data: bytes, setting: Setting, shape: tuple[int, int]) -> Image8:
        """File bytes -> (H, W, 3) uint8 of the original ``shape`` (H, W)."""
        ...


def roundtrip(codec: Codec, img: Image8, setting: Setting) -> tuple[int, Image8]:
    """Encode and decode ``img``: (compressed size in bytes, decoded uint8 image)."""
    data = codec.encode(img, setting)
    dec = codec.decode(data, setting, (img.shape[0], img.shape[1]))
    if dec.shape != img.shape or dec.dtype != np.uint8:
        raise CodecError(
            f"{codec.name} at {codec.setting_name}={setting}: decoded {dec.shape} {dec.dtype}, "
            f"expected {img.shape} uint8"
        )
    return len(data), dec


# name -> class path; imported lazily so that listing codecs needs no tool.
CLASSICAL = ("jpeg2000", "webp", "avif", "hevc", "jpeg")


def build_classical(names: Sequence[str], cfg: EvaluateConfig) -> list[Codec]:
    """The classical codecs ``names`` with the ladders and options of ``cfg``."""
    from ltchm.evaluation import classical as c

    factories: dict[str, Callable[[], Codec]] = {
        "jpeg2000": lambda: c.JPEG2000(ratios=cfg.jpeg2000_ratios),
        "webp": lambda: c.WebP(qualities=cfg.webp_qualities, method=cfg.webp_method),
        "avif": lambda: c.AVIF(qualities=cfg.avif_qualities, speed=cfg.avif_speed),
        "hevc": lambda: c.HEVC(qps=cfg.hevc_qps, preset=cfg.hevc_preset, chroma=cfg.hevc_chroma),
        "jpeg": lambda: c.JPEG(qualities=cfg.jpeg_qualities),
    }
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise ValueError(f"unknown codec(s) {unknown}; choose from {', '.join(CLASSICAL)}")
    built: list[Codec] = [factories[n]() for n in names]
    return built
