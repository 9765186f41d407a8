"""Streaming the shards into PyTorch: random-crop training batches and whole eval images.

Training (:func:`make_train_loader`) follows WebDataset's recipe for multi-node training:
shards are *resampled* (drawn with replacement, so every rank and DataLoader worker streams
forever without coordinating), split by node and by worker, samples pass a shuffle buffer,
get a random crop and flips, are batched inside the workers, and an *epoch* is a fixed number
of samples. Evaluation (:func:`iter_images`) reads each val/test image once, whole, in
manifest order.

Typical use inside a Ray Train worker (``torch.distributed`` already initialised)::

    loader = make_train_loader(cfg.data.shards, batch_size=cfg.train.batch_size // world,
                               patch_size=cfg.train.patch_size,
                               shuffle_buffer=cfg.data.shuffle_buffer,
                               epoch_length=cfg.data.epoch_length,
                               num_workers=cfg.train.loader_workers, seed=cfg.train.seed)
    for x in loader:          # (B, 3, P, P) float32 in [0, 1]
        ...
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch import Tensor

from pipeline.shards import MANIFEST

__all__ = [
    "CorruptShardError",
    "RandomCropFlip",
    "ShardError",
    "iter_images",
    "make_train_loader",
    "shard_message",
    "shard_urls",
]


class ShardError(RuntimeError):
    """A shard that cannot be read while training: names the shard (and sample) and why."""


class CorruptShardError(ShardError):
    """A shard whose bytes are at fault (not a tar, truncated, a sample that does not decode):
    reading it again meets the same error, so a restart cannot help. An I/O error (a
    connection reset, a missing mount) stays a plain :class:`ShardError`."""


def shard_message(exc: BaseException) -> str:
    """The one-line message of a :class:`ShardError`, also when it crossed a DataLoader
    worker, whose re-raise puts the original's traceback into the message."""
    lines = str(exc).strip().splitlines()
    for line in reversed(lines):
        head, sep, rest = line.partition("ShardError: ")
        if sep and not head.strip(" .").endswith("Caught"):
            return rest.strip()
    return lines[0] if lines else type(exc).__name__


def _shard_failed(exc: Exception) -> bool:
    # webdataset appends the source (stream, url) to the exception's args before calling
    # the handler: the url is the last of them
    url = exc.args[-1] if exc.args and isinstance(exc.args[-1], str) else "?"
    why = str(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else ""
    # tarfile's errors are not OSErrors: the bytes, not the way to them
    kind = ShardError if isinstance(exc, OSError) else CorruptShardError
    raise kind(
        f"shard {url} cannot be read: {type(exc).__name__}{': ' + why if why else ''}"
    ) from exc


_DECODER = wds.autodecode.Decoder([wds.autodecode.ImageHandler("rgb8")])


def _decoded_image(sample: dict[str, Any]) -> np.ndarray:
    try:
        return _image(_DECODER(sample))
    except Exception as exc:
        raise CorruptShardError(
            f"shard {sample.get('__url__', '?')}: sample {sample.get('__key__')!r} cannot be "
            f"decoded ({type(exc).__name__}: {exc})"
        ) from exc


def shard_urls(shards: str | Path | Sequence[str], split: str = "train") -> list[str]:
    """Shard URLs of ``split`` from an output folder, a brace pattern or an explicit list.

    A folder is read through its ``manifest.json`` (only complete jobs have one; a folder
    without a manifest is refused rather than read half-written).
    """
    if not isinstance(shards, (str, Path)):
        urls = [str(u) for u in shards]
    else:
        path = Path(shards)
        if path.is_dir():
            manifest = path / MANIFEST
            if not manifest.is_file():
                raise FileNotFoundError(
                    f"{path}: no {MANIFEST}; is the preprocessing job finished?"
                )
            entries = read_manifest(path)["shards"]
            urls = [str(path / s["name"]) for s in entries if s["split"] == split]
        else:
            urls = [str(shards)]  # a URL or brace pattern; webdataset expands it
    if not urls:
        raise FileNotFoundError(f"no {split!r} shards in {shards}")
    return urls


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` of a preprocessing output; ``ValueError`` naming the file when
    it is not one."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a valid manifest ({exc})") from None
    shards = manifest.get("shards") if isinstance(manifest, dict) else None
    if not isinstance(shards, list) or not all(
        isinstance(s, dict) and {"name", "split", "sha256", "bytes"} <= s.keys() for s in shards
    ):
        raise ValueError(f"{path}: not a manifest of ltchm preprocess (no valid 'shards' list)")
    return manifest


def verify_shards(folder: str | Path, splits: Sequence[str], checksums: bool = True) -> None:
    """Check the shards of ``splits`` against the manifest before any work: present, of the
    recorded size, and of the recorded sha256 (every shard with ``checksums``, else the
    first and last of each split: a sample for sets too large to hash at every start).
    ``ValueError`` names the first bad shard and what to do: a truncated or replaced shard
    otherwise fails minutes later inside a training worker."""
    import hashlib

    folder = Path(folder)
    entries = [e for e in read_manifest(folder)["shards"] if e["split"] in splits]
    sample = set()
    for split in splits:
        names = [e["name"] for e in entries if e["split"] == split]
        sample.update(names[:1] + names[-1:])
    for entry in entries:
        path = folder / entry["name"]
        if not path.is_file():
            raise ValueError(f"{path}: listed in the manifest but missing; re-run ltchm preprocess")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise ValueError(
                f"{path}: {size} bytes, the manifest records {entry['bytes']} (truncated or "
                "replaced); re-run ltchm preprocess on the same inputs to rewrite it"
            )
        if checksums or entry["name"] in sample:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(1 << 22):
                    h.update(block)
            if h.hexdigest() != entry["sha256"]:
                raise ValueError(
                    f"{path}: sha256 differs from the manifest (corrupt or replaced); re-run "
                    "ltchm preprocess on the same inputs to rewrite it"
                )


class RandomCropFlip:
    """Random ``size`` crop (symmetric padding when smaller) and random H/V flips.

    Remote-sensing tiles have no canonical orientation, so vertical flips are as valid as
    horizontal ones. Each DataLoader worker of each rank draws from its own generator seeded
    by ``(seed, rank, worker)``.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.seed = seed
        self._rng: np.random.Generator | None = None

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            rank, _, worker, _ = wds.utils.pytorch_worker_info()
            self._rng = np.random.default_rng([self.seed, rank, worker])
        return self._rng

    def __call__(self, image: np.ndarray) -> Tensor:
        rng = self._generator()
        s = self.size
        h, w = image.shape[:2]
        if h < s or w < s:
            image = np.pad(image, ((0, max(0, s - h)), (0, max(0, s - w)), (0, 0)), "symmetric")
            h, w = image.shape[:2]
        y = int(rng.integers(0, h - s + 1))
        x = int(rng.integers(0, w - s + 1))
        crop = image[y : y + s, x : x + s]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[::-1]
        out = torch.from_numpy(np.require(crop, requirements=["C", "W"])).permute(2, 0, 1)
        return out.float().div_(255.0)


def _image(sample: dict[str, Any]) -> np.ndarray:
    for ext in ("png", "webp", "jpg"):
        if ext in sample:
            return sample[ext]
    raise KeyError(f"sample {sample.get('__key__')!r} has no image (png/webp)")


def make_train_loader(
    shards: str | Path | Sequence[str],
    batch_size: int,
    patch_size: int = 256,
    shuffle_buffer: int = 1000,
    epoch_length: int = 10_000,
    num_workers: int = 2,
    seed: int = 0,
) -> wds.WebLoader:
    """An endless-source DataLoader of ``(batch_size, 3, patch_size, patch_size)`` float batches.

    Args:
        shards: the job's output folder (train shards from its manifest), a brace pattern
            such as ``/data/shards/train-{000000..000127}.tar``, or a list of URLs.
        batch_size: samples per batch *of this process* (per rank).
        patch_size: random crop size; tiles smaller than it are padded symmetrically.
        shuffle_buffer: samples held for shuffling in each DataLoader worker (0: none).
            Tiles of one image sit together in a shard; a buffer of a few hundred to a few
            thousand mixes them.
        epoch_length: samples one epoch yields on this rank (``cfg.data.epoch_length``), split
            evenly over the DataLoader workers and rounded up to whole batches. Shards are
            resampled, so an epoch is just a length: iterate the loader again for the next.
        num_workers: DataLoader worker processes (0: load in this process).
        seed: seeds the shard resampling, the shuffle buffer and the crops, per rank and
            worker: the stream is reproducible for a given (seed, world size, num_workers).

    Under ``torch.distributed`` (Ray Train initialises it), each rank resamples with its own
    seed and :func:`webdataset.split_by_node` / :func:`webdataset.split_by_worker` split the
    shard stream, so ranks and workers read different shards without coordination.
    """
    if batch_size < 1 or patch_size < 1 or epoch_length < 1:
        raise ValueError("batch_size, patch_size and epoch_length must be positive")
    urls = shard_urls(shards, "train")
    workers = max(1, num_workers)
    batches_per_worker = math.ceil(epoch_length / (batch_size * workers))
    # webdataset's WebDataset(resampled=True) draws shards with an unseeded (pid/time) RNG;
    # the same primitives assembled with deterministic=True give a reproducible stream.
    dataset = wds.DataPipeline(
        wds.ResampledShards(urls, seed=seed, deterministic=True),
        wds.split_by_node,
        wds.split_by_worker,
        wds.tarfile_to_samples(handler=_shard_failed),
        wds.shuffle(shuffle_buffer, seed=seed) if shuffle_buffer > 0 else _identity,
        wds.map(_decoded_image),
        wds.map(RandomCropFlip(patch_size, seed)),
        wds.batched(batch_size, collation_fn=torch.stack, partial=False),
    ).with_epoch(batches_per_worker)
    return wds.WebLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
    )


def _identity(src: Iterator[Any]) -> Iterator[Any]:
    yield from src


def iter_images(
    shards: str | Path | Sequence[str],
    split: str = "val",
    *,
    dtype: torch.dtype = torch.float32,
    limit: int | None = None,
    split_by_node: bool = False,
) -> Iterator[tuple[Tensor, dict[str, Any]]]:
    """Yield ``(image, metadata)`` for each whole image of ``split``, in manifest order.

    ``image`` is (3, H, W): float32 in [0, 1] by default, or uint8 with ``dtype=torch.uint8``.
    ``metadata`` is the sample's json (dataset, source, size, stretch, ...). With
    ``split_by_node`` each rank of a distributed job gets a disjoint share of the shards.
    """
    urls = shard_urls(shards, split)
    dataset = wds.WebDataset(
        urls,
        shardshuffle=False,
        nodesplitter=wds.split_by_node if split_by_node else None,
        workersplitter=None,
        empty_check=False,
    ).decode("rgb8")
    for n, sample in enumerate(dataset):
        if limit is not None and n >= limit:
            return
        image = torch.from_numpy(np.require(_image(sample), requirements=["C", "W"]))
        image = image.permute(2, 0, 1)
        if dtype != torch.uint8:
            image = image.to(dtype).div_(255.0)
        yield image.contiguous(), sample["json"]
