import json

import pytest
import torch

from jobs.preprocess import preprocess
from ltchm.config import PreprocessConfig
from pipeline.loader import (
    CorruptShardError,
    RandomCropFlip,
    ShardError,
    iter_images,
    make_train_loader,
    shard_urls,
)


@pytest.fixture(scope="module")
def train_dir(archives, tmp_path_factory):
    out = tmp_path_factory.mktemp("train_shards")
    cfg = PreprocessConfig(split_ratios=(1.0, 0.0, 0.0), shard_max_bytes=300_000)
    preprocess([archives["ucm_zip"], archives["dota_zip"]], out, cfg, progress=False, use_ray=False)
    return out


@pytest.fixture(scope="module")
def val_dir(archives, tmp_path_factory):
    out = tmp_path_factory.mktemp("val_shards")
    cfg = PreprocessConfig(split_ratios=(0.0, 1.0, 0.0))
    preprocess([archives["dota_zip"], archives["gaofen"]], out, cfg, progress=False, use_ray=False)
    return out


def test_shard_urls(train_dir, tmp_path):
    urls = shard_urls(train_dir)
    manifest = json.loads((train_dir / "manifest.json").read_text())
    assert len(urls) == len(manifest["shards"]) > 1
    assert shard_urls([urls[0]]) == [urls[0]]
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json"):
        shard_urls(tmp_path)
    with pytest.raises(FileNotFoundError, match="no 'val' shards"):
        shard_urls(train_dir, "val")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_train_batches(train_dir, num_workers):
    loader = make_train_loader(
        train_dir, batch_size=4, patch_size=128, shuffle_buffer=20, epoch_length=24,
        num_workers=num_workers, seed=0,
    )  # fmt: skip
    for _ in range(2):  # two epochs of a resampled stream
        batches = list(loader)
        # 24 samples per epoch on this rank: 6 batches of 4 (3 per worker with 2 workers).
        assert len(batches) == 6
        for x in batches:
            assert x.shape == (4, 3, 128, 128) and x.dtype == torch.float32
            assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert len({float(x.sum()) for x in batches}) == 6  # not one batch repeated


def test_train_stream_is_reproducible_per_seed(train_dir):
    def take(seed):
        loader = make_train_loader(train_dir, 2, 64, 10, 8, num_workers=0, seed=seed)
        return torch.cat(list(loader))

    assert torch.equal(take(3), take(3))
    assert not torch.equal(take(3), take(4))


def test_ranks_read_different_streams(train_dir, monkeypatch):
    # webdataset takes the rank from RANK/WORLD_SIZE (set by torchrun and Ray Train) before
    # asking torch.distributed.
    def take(rank):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        loader = make_train_loader(train_dir, 2, 64, 0, 8, num_workers=0, seed=0)
        return torch.cat(list(loader))

    rank0, rank1 = take(0), take(1)
    assert rank0.shape == rank1.shape == (8, 3, 64, 64)
    assert not torch.equal(rank0, rank1)
    assert torch.equal(take(1), rank1)


def test_crop_pads_small_images_and_flips():
    import numpy as np

    crop = RandomCropFlip(96, seed=0)
    small = np.arange(50 * 40 * 3, dtype=np.uint8).reshape(50, 40, 3)
    out = crop(small)
    assert out.shape == (3, 96, 96) and out.dtype == torch.float32
    big = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    outs = [crop(big) for _ in range(20)]
    assert len({float(o.sum()) for o in outs}) > 10


def test_iter_images_yields_whole_images(val_dir):
    got = list(iter_images(val_dir, "val"))
    manifest = json.loads((val_dir / "manifest.json").read_text())
    assert len(got) == manifest["samples"]["val"] == 4
    for image, meta in got:
        assert meta["whole_image"] and meta["split"] == "val"
        assert image.shape == (3, meta["image"]["height"], meta["image"]["width"])
        assert image.dtype == torch.float32 and float(image.max()) <= 1.0
    stretched = [m for _, m in got if m["stretch"] is not None]
    assert [m["image_id"] for m in stretched] == ["riocolor_rgb16"]
    first, meta = next(iter_images(val_dir, "val", dtype=torch.uint8))
    assert first.dtype == torch.uint8
    assert torch.equal(first.float().div(255), got[0][0])
    assert len(list(iter_images(val_dir, "val", limit=2))) == 2


def test_verify_shards_checks_all_or_a_sample(tmp_path) -> None:
    import hashlib

    from pipeline.loader import verify_shards

    names = [f"train-{i:06d}.tar" for i in range(3)]
    entries = []
    for name in names:
        data = name.encode() * 10
        (tmp_path / name).write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        entries.append({"name": name, "split": "train", "bytes": len(data), "sha256": sha})
    (tmp_path / "manifest.json").write_text(json.dumps({"shards": entries}))
    verify_shards(tmp_path, ("train",))
    middle = tmp_path / names[1]
    middle.write_bytes(bytes(middle.stat().st_size))  # same size, other bytes
    verify_shards(tmp_path, ("train",), checksums=False)  # the sample: first and last only
    with pytest.raises(ValueError, match=f"{names[1]}: sha256 differs"):
        verify_shards(tmp_path, ("train",))
    first = tmp_path / names[0]
    first.write_bytes(bytes(first.stat().st_size))
    with pytest.raises(ValueError, match=f"{names[0]}: sha256 differs"):
        verify_shards(tmp_path, ("train",), checksums=False)


def test_bytes_at_fault_are_told_apart_from_io_errors(train_dir, tmp_path) -> None:
    """A junk shard fails the same way every time (CorruptShardError: training stops without
    restarts); a shard that cannot be reached is a plain ShardError (a restart may read it)."""
    url = shard_urls(train_dir)[0]
    junk = tmp_path / "junk.tar"
    junk.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(CorruptShardError, match=r"shard \S+junk\.tar cannot be read: ReadError"):
        next(iter(make_train_loader([str(junk)], 2, 64, 4, 8, num_workers=0, seed=0)))
    gone = str(tmp_path / "gone.tar")
    with pytest.raises(ShardError, match=r"gone\.tar cannot be read: FileNotFoundError") as err:
        next(iter(make_train_loader([gone], 2, 64, 4, 8, num_workers=0, seed=0)))
    assert not isinstance(err.value, CorruptShardError)
    assert next(iter(make_train_loader([url], 2, 64, 4, 8, num_workers=0, seed=0))).shape[0] == 2
