"""Planning and writing shards in this process (the Ray job is tested in tests/jobs)."""

import io
import json
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from ltchm.config import PreprocessConfig
from pipeline.archives import ArchiveError
from pipeline.plan import ShardPlan, make_plan
from pipeline.shards import build_manifest, build_shard, file_sha256, state_path
from pipeline.tiling import tile_grid

ALL_TILED = {"tile_splits": ("train", "val", "test")}


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _samples(path):
    """{key: (json, png bytes)} of one shard, read with plain tarfile."""
    out = {}
    with tarfile.open(path) as tf:
        members = tf.getmembers()
        for m in members:
            key, ext = m.name.split(".", 1)
            out.setdefault(key, {})[ext] = tf.extractfile(m).read()
        assert all(m.mtime == 0 and m.mode == 0o444 and m.isreg() for m in members)
    return {k: (json.loads(v["json"]), v["png"]) for k, v in out.items()}


@pytest.fixture(scope="module")
def odd_zip(dev, tmp_path_factory):
    """A DOTA-layout part with images that need a rule: small, gray, 16-bit, flat, broken."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("odd") / "odd.zip"
    real = np.asarray(Image.open(dev / "dota" / "P1888.png"))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images/P9001.png", _png(real[:100, :120]))  # smaller than a tile
        zf.writestr("images/P9002.png", _png(real[:300, :280, 0]))  # grayscale
        deep = (real[:260, :270, 1].astype(np.uint16) * 200 + 7).astype(np.uint16)
        zf.writestr("images/P9003.png", _png(deep))  # 16-bit
        flat = np.full((300, 600, 3), 90, np.uint8)
        flat[:, 300:] = rng.integers(0, 256, (300, 300, 3))
        zf.writestr("images/P9004.png", _png(flat))  # left tiles constant
        zf.writestr("images/P9005.png", (dev / "dota" / "P1888.png").read_bytes()[:4000])
        zf.writestr("images/P9006.png", b"plain text, not an image")
        zf.writestr("images/notes.bin", b"\x00\x01")
        zf.writestr("../escape/P9007.png", _png(real[:300, :300]))
    return path


def test_plan_is_deterministic_and_order_free(archives, odd_zip):
    cfg = PreprocessConfig(shard_max_bytes=1_000_000)
    a = make_plan([archives["dota_zip"], archives["ucm_zip"], odd_zip], cfg)
    b = make_plan([odd_zip, archives["ucm_zip"], archives["dota_zip"]], cfg)
    assert a.fingerprint == b.fingerprint
    assert [s.to_json() for s in a.shards] == [s.to_json() for s in b.shards]
    assert [ShardPlan.from_json(s.to_json()).to_json() for s in a.shards] == [
        s.to_json() for s in a.shards
    ]
    # Each image in exactly one shard, the shard of its split.
    keys = [e.key for s in a.shards for e in s.images]
    assert len(keys) == len(set(keys)) == 6 + 2 + 6
    assert all(
        e.split == s.split and s.name.startswith(s.split) for s in a.shards for e in s.images
    )
    skipped = {d["member"]: d["reason"] for d in a.skipped}
    assert "path traversal" in skipped["../escape/P9007.png"]
    assert skipped["images/notes.bin"].startswith("not an image")
    assert a.ignored == {".txt (annotation/sidecar)": 2}
    # A different seed moves images between splits: the plan (and every hash) changes.
    c = make_plan([archives["dota_zip"]], PreprocessConfig(split_seed=1))
    assert c.fingerprint != make_plan([archives["dota_zip"]], PreprocessConfig()).fingerprint


def test_duplicates_across_parts_are_skipped(archives, dev, tmp_path):
    from pipeline.sample_archives import make_dota_part

    v15 = make_dota_part([dev / "dota" / "P0130.png"], tmp_path / "DOTA-v1.5.zip", version="1.5")
    plan = make_plan([archives["dota_zip"], v15], PreprocessConfig())
    ids = sorted(e.image_id for e in plan.images)
    assert ids == ["P0004__1__0___0", "P0130"]
    (dup,) = [d for d in plan.skipped if "duplicate" in d["reason"]]
    # Sorted by archive name, DOTA-v1.5.zip's copy comes first and part1.zip's is the duplicate.
    assert dup["archive"] == "part1.zip" and "DOTA-v1.5.zip:images/P0130.png" in dup["reason"]


def test_keys_are_dot_free_and_unique(dev, tmp_path):
    folder = tmp_path / "photos"
    for rel in ("a.b/c.d.png", "a_b/c_d.png", "x" * 120 + ".png"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes((dev / "dota" / "P1888.png").read_bytes())
    plan = make_plan([folder], PreprocessConfig())
    keys = [e.key for e in plan.images]
    assert len(set(keys)) == 3
    assert all("." not in k and "/" not in k and len(k) <= 81 for k in keys)


def test_shard_contents_and_rules(archives, odd_zip, tmp_path):
    cfg = PreprocessConfig(**ALL_TILED)
    plan = make_plan([archives["dota_tar"], odd_zip], cfg)
    records = [build_shard(s, tmp_path, cfg) for s in plan.shards]
    manifest = build_manifest(plan, records)
    samples = {}
    for r in records:
        got = _samples(tmp_path / r["name"])
        assert len(got) == r["samples"] and r["sha256"] == file_sha256(tmp_path / r["name"])
        samples.update(got)

    by_image = {}
    for key, (meta, _) in samples.items():
        assert meta["key"] == key and "." not in key
        by_image.setdefault(meta["image_id"], []).append(meta)
    # Real DOTA images: every tile of the grid (pixels: test_tiles_are_the_source_pixels).
    for image_id, (w, h) in {"P0706": (1111, 1182), "P1888": (712, 557)}.items():
        metas = by_image[image_id]
        assert {(m["tile"]["x"], m["tile"]["y"]) for m in metas} == set(tile_grid(h, w, 256, 256))
        assert all(
            m["image"] == {"width": w, "height": h, "bands": 3, "dtype": "uint8"} for m in metas
        )
        assert all(m["source"]["archive"] == "part2.tar" for m in metas)
    # Small image: one padded tile, padding recorded.
    (small,) = by_image["P9001"]
    assert small["padding"] == {"mode": "symmetric", "valid_width": 120, "valid_height": 100}
    assert small["valid_fraction"] == pytest.approx(120 * 100 / 256**2, abs=1e-6)
    # Grayscale and 16-bit converted, the stretch stored with every tile.
    assert all(m["conversions"] == ["grayscale to RGB"] for m in by_image["P9002"])
    deep = by_image["P9003"]
    assert all(m["stretch"] == deep[0]["stretch"] is not None for m in deep)
    assert deep[0]["image"]["dtype"] == "uint16"
    # Constant tiles skipped and counted; textured ones kept.
    assert {(m["tile"]["x"], m["tile"]["y"]) for m in by_image["P9004"]} == {
        (256, 0),
        (256, 44),
        (344, 0),
        (344, 44),
    }
    assert manifest["tiles_skipped"] == {"constant": 2}  # (0, 0) and (0, 44)
    # Broken members: reported with the reason, the job goes on.
    reasons = {d["member"]: d["reason"] for d in manifest["skipped"]}
    assert "unreadable image" in reasons["images/P9005.png"]
    assert "unreadable image" in reasons["images/P9006.png"]
    assert "P9005" not in by_image and "P9006" not in by_image
    assert manifest["padded_images"] == 1
    total = sum(r["samples"] for r in records)
    assert sum(manifest["samples"].values()) == total == len(samples)


def test_tiles_are_the_source_pixels(archives, dev, tmp_path):
    cfg = PreprocessConfig(**ALL_TILED)
    plan = make_plan([archives["dota_tar"]], cfg)
    for shard in plan.shards:
        build_shard(shard, tmp_path, cfg)
    source = np.asarray(Image.open(dev / "dota" / "P0706.png"))
    checked = 0
    for shard in plan.shards:
        for key, (meta, png) in _samples(tmp_path / shard.name).items():
            if meta["image_id"] != "P0706":
                continue
            x, y = meta["tile"]["x"], meta["tile"]["y"]
            tile = np.asarray(Image.open(io.BytesIO(png)))
            assert np.array_equal(tile, source[y : y + 256, x : x + 256]), key
            checked += 1
    assert checked == len(tile_grid(1182, 1111, 256, 256))


def test_whole_images_for_eval_splits(archives, tmp_path):
    cfg = PreprocessConfig(split_ratios=(0.0, 1.0, 0.0))  # everything in val, kept whole
    plan = make_plan([archives["dota_zip"]], cfg)
    records = [build_shard(s, tmp_path, cfg) for s in plan.shards]
    metas = [m for r in records for m, _ in _samples(tmp_path / r["name"]).values()]
    assert {m["split"] for m in metas} == {"val"}
    assert all(m["whole_image"] and m["tile"]["x"] == m["tile"]["y"] == 0 for m in metas)
    assert sorted((m["tile"]["width"], m["tile"]["height"]) for m in metas) == [
        (285, 294),
        (728, 860),
    ]


def test_reuse_only_when_verified(archives, tmp_path):
    cfg = PreprocessConfig()
    (shard,) = make_plan([archives["dota_zip"]], PreprocessConfig(split_ratios=(1, 0, 0))).shards
    first = build_shard(shard, tmp_path, cfg)
    again = build_shard(shard, tmp_path, cfg)
    assert not first["reused"] and again["reused"] and again["sha256"] == first["sha256"]
    target = tmp_path / shard.name
    raw = bytearray(target.read_bytes())
    raw[1000] ^= 0xFF
    target.write_bytes(bytes(raw))
    healed = build_shard(shard, tmp_path, cfg)
    assert not healed["reused"] and file_sha256(target) == first["sha256"]
    # A record of another plan is not trusted either.
    record = json.loads(state_path(tmp_path, shard.name).read_text())
    record["plan_hash"] = "0" * 64
    state_path(tmp_path, shard.name).write_text(json.dumps(record))
    assert not build_shard(shard, tmp_path, cfg)["reused"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.is_file()]


def test_webp_is_lossless(archives, dev, tmp_path):
    cfg = PreprocessConfig(image_format="webp", split_ratios=(1, 0, 0))
    (shard,) = make_plan([archives["dota_tar"]], cfg).shards
    build_shard(shard, tmp_path, cfg)
    source = np.asarray(Image.open(dev / "dota" / "P1888.png"))
    with tarfile.open(tmp_path / shard.name) as tf:
        name = "dota_P1888_x00256_y00256"
        tile = np.asarray(Image.open(tf.extractfile(f"{name}.webp")).convert("RGB"))
    assert np.array_equal(tile, source[256:512, 256:512])


def test_a_source_gone_since_planning_is_an_error(archives, dev, tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    (folder / "a.tif").write_bytes((dev / "scenes" / "riocolor_rgb16.tif").read_bytes())
    zipped = tmp_path / "part1.zip"
    zipped.write_bytes(archives["dota_zip"].read_bytes())
    cfg = PreprocessConfig(split_ratios=(1, 0, 0))
    plan = make_plan([folder, zipped], cfg)
    (folder / "a.tif").unlink()
    zipped.unlink()
    # Not "skipped": a whole source missing (e.g. not on shared storage) must stop the job.
    for shard in plan.shards:
        with pytest.raises(ArchiveError, match="not found on this node"):
            build_shard(shard, tmp_path / "out", cfg)


def test_same_named_parts_are_told_apart(dev, tmp_path):
    from pipeline.sample_archives import make_dota_part

    # DOTA ships train/part1.zip and val/part1.zip.
    train = make_dota_part([dev / "dota" / "P0706.png"], tmp_path / "train" / "part1.zip")
    val = make_dota_part([dev / "dota" / "P1888.png"], tmp_path / "val" / "part1.zip")
    plan = make_plan([train, val], PreprocessConfig())
    assert sorted(s["name"] for s in plan.sources) == ["train/part1.zip", "val/part1.zip"]
    archives = {e.image_id: e.archive for e in plan.images}
    assert archives == {"P0706": "train/part1.zip", "P1888": "val/part1.zip"}
