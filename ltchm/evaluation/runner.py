"""Run every codec setting on every image and measure it: the evaluation's work loop.

Each (image, codec, setting) is one task: encode, decode, count the file's bytes, compute the
metrics. Tasks of command-line codecs run in a process pool; learned codecs run in this
process (their model already uses every core, or the accelerator). Images stream in; at most
a few tasks per worker are in flight, so the test set never has to fit in memory.

Why a process pool and not a Ray Data pipeline: neither was faster beyond the noise of the
measurement (benchmarks/RESULTS.md, "Implementation choices"); the pool starts instantly,
needs no object store, streams its input and fails with the codec's own error, and the work
(short subprocess calls and small torch metrics) needs no cluster. Tools and torch run
single-threaded in the workers: per-image torch ops on 2 threads were slower, not faster.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ltchm.evaluation.codecs import Codec, CodecError, Setting
from ltchm.evaluation.metrics import image_metrics, load_lpips
from ltchm.imageio import Image8

__all__ = ["RECORD_FIELDS", "evaluate"]

RECORD_FIELDS = (
    "image",
    "width",
    "height",
    "codec",
    "label",
    "setting_name",
    "setting",
    "bytes",
    "bpp",
    "psnr",
    "ms_ssim",
    "ms_ssim_db",
    "lpips",
    "vifp",
    "encode_s",
    "decode_s",
    "notes",
)

# Per-process state: the codecs and the LPIPS network, set up once per worker.
_STATE: dict[str, Any] = {}


def _init(
    codecs: Sequence[Codec | None], lpips_weights: str | None, use_lpips: bool, threads: int
) -> None:
    torch.set_num_threads(threads)
    _STATE.update(codecs=list(codecs), lpips=None, lpips_args=(use_lpips, lpips_weights))


def _lpips_model() -> torch.nn.Module | None:
    use, weights = _STATE["lpips_args"]
    if use and _STATE["lpips"] is None:
        _STATE["lpips"] = load_lpips(weights)
    model: nn.Module | None = _STATE["lpips"]
    return model


def _measure(image: str, img: Image8, index: int, setting: Setting) -> dict[str, Any]:
    codec: Codec = _STATE["codecs"][index]
    H, W = img.shape[:2]
    t0 = time.perf_counter()
    try:
        data = codec.encode(img, setting)
        t1 = time.perf_counter()
        dec = codec.decode(data, setting, (H, W))
        t2 = time.perf_counter()
        if dec.shape != img.shape or dec.dtype != np.uint8:
            raise CodecError(
                f"{codec.name} at {codec.setting_name}={setting}: decoded {dec.shape} "
                f"{dec.dtype}, expected {img.shape} uint8"
            )
    except CodecError as exc:
        raise CodecError(f"{image}: {exc}") from None
    metrics, notes = image_metrics(img, dec, _lpips_model())
    return {
        "image": image,
        "width": W,
        "height": H,
        "codec": codec.name,
        "label": codec.label,
        "setting_name": codec.setting_name,
        "setting": setting,
        "bytes": len(data),
        "bpp": len(data) * 8 / (H * W),
        **metrics,
        "encode_s": t1 - t0,
        "decode_s": t2 - t1,
        "notes": "; ".join(notes),
    }


def evaluate(
    images: Iterable[tuple[str, Image8]],
    codecs: Sequence[Codec],
    lpips_weights: str | None = None,
    use_lpips: bool = True,
    workers: int | None = None,
    total_images: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Measure every setting of every codec on every image; one record per triple.

    Args:
        images: (name, (H, W, 3) uint8) pairs, read lazily.
        codecs: the codecs; each must pass ``check()`` (tools present) before any work starts.
        lpips_weights: AlexNet weights for LPIPS (``None``: the torch hub cache).
        use_lpips: ``False`` leaves LPIPS out (``nan``) instead of requiring the weights.
        workers: processes for the parallel codecs (default: the CPU count; 1 = in-process).

    Returns:
        Records with the keys of :data:`RECORD_FIELDS`, ordered by codec, ladder, image.
    """
    for codec in codecs:
        codec.check()
    names = [c.name for c in codecs]
    if len(set(names)) != len(names):
        raise ValueError(f"codec names must be distinct, got {names}")
    workers = workers or os.cpu_count() or 1
    settings = [(i, s) for i, c in enumerate(codecs) for s in c.ladder()]
    parallel = workers > 1 and any(codecs[i].parallel for i, _ in settings)
    _init(codecs, lpips_weights, use_lpips, torch.get_num_threads())
    _lpips_model()  # fails before any work if the weights are missing
    pool = None
    if parallel:
        # spawn, not fork: forking a process whose torch thread pools are running can hang.
        pool = ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),
            initializer=_init,
            # Workers get only the codecs they run (a learned one would drag its model along).
            initargs=([c if c.parallel else None for c in codecs], lpips_weights, use_lpips, 1),
        )
    total = None if total_images is None else total_images * len(settings)
    bar = tqdm(total=total, desc="evaluate", unit="pt", disable=not progress, dynamic_ncols=True)
    records: list[dict[str, Any]] = []
    pending: set[Future[dict[str, Any]]] = set()
    image_order: dict[str, int] = {}

    def drain(limit: int) -> None:
        nonlocal pending
        while len(pending) > limit:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                records.append(fut.result())
                bar.update()

    try:
        for name, img in images:
            if name in image_order:
                raise ValueError(f"two images are named {name!r}; names must be unique")
            image_order[name] = len(image_order)
            for index, setting in settings:
                if pool is not None and codecs[index].parallel:
                    pending.add(pool.submit(_measure, name, img, index, setting))
                    drain(4 * workers)
                else:
                    records.append(_measure(name, img, index, setting))
                    bar.update()
        drain(0)
    except BaseException:
        for fut in pending:
            fut.cancel()
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    ladder_pos = {(i, s): k for k, (i, s) in enumerate(settings)}
    index_of = {c.name: i for i, c in enumerate(codecs)}
    records.sort(
        key=lambda r: (
            ladder_pos[(index_of[r["codec"]], r["setting"])],
            image_order[r["image"]],
        )
    )
    return records
