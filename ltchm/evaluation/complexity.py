"""A complexity table like the paper's Tab. 6: parameters, FLOPs, encode and decode time per
256x256 image, for every codec, on the device at hand.

Parameters and FLOPs are those of :func:`ltchm.complexity.measure` for codecs backed by a
model (anything with ``model(setting)``); command-line codecs have none. Times are the median
of ``repeats`` runs after one warm-up, wall clock, of the codec's own ``encode``/``decode``:
for the command-line tools that includes starting the process and its file I/O, as using
them does.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ltchm.evaluation.codecs import Codec, Setting
from ltchm.imageio import Image8

__all__ = [
    "COMPLEXITY_FIELDS",
    "complexity_markdown",
    "complexity_table",
    "crop_256",
    "device_description",
]

COMPLEXITY_FIELDS = (
    "codec",
    "label",
    "setting",
    "params",
    "flops",
    "encode_ms",
    "decode_ms",
    "bpp",
    "device",
)
SIZE = 256


def device_description(device: str = "cpu") -> str:
    """What the timings ran on: the GPU's name, or the CPU model and its core count."""
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(torch.device(device))} ({device})"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def crop_256(img: Image8) -> Image8:
    """The centre 256x256 of an image (edge-padded first if a side is shorter)."""
    H, W = img.shape[:2]
    if H < SIZE or W < SIZE:
        img = np.pad(img, ((0, max(0, SIZE - H)), (0, max(0, SIZE - W)), (0, 0)), "edge")
        H, W = img.shape[:2]
    top, left = (H - SIZE) // 2, (W - SIZE) // 2
    return np.ascontiguousarray(img[top : top + SIZE, left : left + SIZE])


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    result = fn()  # warm-up: caches, lazily loaded models, kernels
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def _row(codec: Codec, setting: Setting, img: Image8, repeats: int, device: str) -> dict[str, Any]:
    row: dict[str, Any] = {"codec": codec.name, "label": codec.label, "setting": setting}
    row["params"] = row["flops"] = None
    model_of = getattr(codec, "model", None)
    if callable(model_of):
        from ltchm.complexity import measure

        c = measure(model_of(setting), (1, 3, SIZE, SIZE))
        row["params"], row["flops"] = c.params_all, c.flops
    enc_s, data = _timed(lambda: codec.encode(img, setting), repeats)
    shape = (img.shape[0], img.shape[1])
    dec_s, _ = _timed(lambda: codec.decode(data, setting, shape), repeats)
    row.update(
        encode_ms=enc_s * 1e3,
        decode_ms=dec_s * 1e3,
        bpp=len(data) * 8 / (SIZE * SIZE),
        device=device,
    )
    return row


def complexity_table(
    codecs: Sequence[Codec], image: Image8, repeats: int = 3
) -> list[dict[str, Any]]:
    """One row per model of a learned codec and one per classical codec (its middle setting).

    Args:
        image: any (H, W, 3) uint8 image; its centre 256x256 crop is coded.
        repeats: timed runs per row (after one warm-up); the median is reported.

    A codec's ``device`` attribute (learned codecs: ``cpu``, ``cuda:0``) names where it runs;
    command-line codecs run on the CPU.
    """
    img = crop_256(image)
    rows = []
    for codec in codecs:
        ladder = list(codec.ladder())
        has_model = callable(getattr(codec, "model", None))
        where = device_description(getattr(codec, "device", "cpu"))
        for setting in ladder if has_model else [ladder[len(ladder) // 2]]:
            rows.append(_row(codec, setting, img, repeats, where))
    return rows


def _num(value: float | None, scale: float, unit: str) -> str:
    return "-" if value is None else f"{value / scale:.2f}{unit}"


def complexity_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The table as Markdown, like the paper's Tab. 6."""
    lines = [
        "Complexity per 256x256 image (median wall-clock time; params and FLOPs for learned "
        "models only).",
        "",
        "| Codec | Setting | Params | FLOPs | Encode (ms) | Decode (ms) | bpp | Device |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['setting']} | {_num(r['params'], 1e6, 'M')} "
            f"| {_num(r['flops'], 1e9, 'G')} | {r['encode_ms']:.1f} | {r['decode_ms']:.1f} "
            f"| {r['bpp']:.3f} | {r['device']} |"
        )
    return "\n".join(lines) + "\n"
