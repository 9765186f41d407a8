"""The preprocessing job on real Ray: in-process, as a killed and resumed subprocess, and
through ``ray job submit`` against a ``ray start --head`` cluster started here."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import psutil
import pytest
import webdataset as wds
from PIL import Image
from processes import VENV_BIN, wait_for

from jobs.preprocess import main, preprocess
from ltchm.config import PreprocessConfig
from ltchm.paths import REPO_ROOT
from pipeline.sample_archives import make_dota_part, make_gaofen_folder, make_ucmerced_zip
from pipeline.tiling import tile_grid

pytestmark = pytest.mark.slow

# Small archives, one image per shard: enough shards to kill a run in the middle of.
SMALL_ARGS = ["--workers", "1", "--shard-max-bytes", "1024", "--no-progress"]


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def dev(dev_dir: Path) -> Path:
    return dev_dir


@pytest.fixture(scope="module")
def inputs(dev: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """DOTA zip and tar parts (one truncated, one hostile), UC-Merced and Gaofen scenes."""
    root = tmp_path_factory.mktemp("inputs")
    dota = {p.stem: p for p in (dev / "dota").glob("*.png")}
    scenes = dev / "scenes"
    out = {
        "part1": make_dota_part([dota["P0706"], dota["P1888"]], root / "part1.zip", "part1"),
        # v2.0 layout, and P1888 again: a duplicate across parts.
        "part2": make_dota_part(
            [dota["P0130"], dota["P0004__1__0___0"], dota["P1888"]],
            root / "part2.tar",
            version="2.0",
        ),
        "ucm": make_ucmerced_zip((dev / "ucm").glob("*.tif"), root / "UCMerced_LandUse.zip"),
        "gaofen": make_gaofen_folder(
            [
                scenes / "riocolor_rgb16.tif",  # uint16 RGB
                scenes / "opengeos_naip_m_4709963_se_14_1_20100629.tif",  # 4 bands
                scenes / "paddlers_ssst_multispectral.tif",  # 10 bands uint16
                dev / "sar" / "gfc2021_sar_test_11.tif",  # 1 band
            ],
            root / "gaofen",
        ),
    }
    # A download cut off inside its second image.
    full = make_dota_part(
        [dota["P0130"], dota["P0706"]], root / "full3.tar", "part3",
        rename={"P0130": "P7130", "P0706": "P7706"}, labels=False,
    )  # fmt: skip
    data = full.read_bytes()
    (root / "part3.tar").write_bytes(data[: len(data) - 1_000_000])
    full.unlink()
    out["part3"] = root / "part3.tar"
    # Hostile and broken members beside usable odd ones.
    real = np.asarray(Image.open(dota["P1888"]))
    out["bad"] = root / "bad.zip"
    with zipfile.ZipFile(out["bad"], "w") as zf:
        zf.writestr("images/P9001.png", dota["P1888"].read_bytes()[:3000])  # truncated
        zf.writestr("images/P9002.png", b"<html>not an image</html>")
        zf.writestr("images/readme.bin", b"\x00\x01\x02")
        zf.writestr("../../escape/P9003.png", _png(real[:300, :300]))
        zf.writestr("/abs/P9004.png", _png(real[:300, :300]))
        zf.writestr("images/P9005.png", _png(real[:100, :120, 0]))  # gray, smaller than a tile
        zf.writestr("images/P9006.png", _png(real[:260, :300, 1].astype(np.uint16) * 257))
    return out


@pytest.fixture(scope="module")
def small_inputs(inputs) -> list[str]:
    return [str(inputs["part1"]), str(inputs["ucm"])]


# More val/test than 8:1:1 so that 33 images surely give all three splits.
CONFIG = {"split_ratios": (0.6, 0.2, 0.2), "shard_max_bytes": 3_000_000}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "data.yaml"
    path.write_text("preprocess:\n  split_ratios: [0.6, 0.2, 0.2]\n  shard_max_bytes: 3000000\n")
    return path


def _args(inputs: dict[str, Path], config_file: Path) -> list[str]:
    return [str(p) for p in inputs.values()] + ["--config", str(config_file), "--no-progress"]


@pytest.fixture(scope="module")
def reference(inputs, config_file, local_ray, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    assert main([*_args(inputs, config_file), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def small_reference(small_inputs, local_ray, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small_reference")
    assert main([*small_inputs, "--out", str(out), *SMALL_ARGS]) == 0
    return out


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _shard_set(out: Path) -> dict[str, str]:
    """{shard name: sha256} of the tars on disk, checked against the manifest."""
    on_disk = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("*.tar")}
    assert on_disk == {s["name"]: s["sha256"] for s in _manifest(out)["shards"]}
    return on_disk


def _read_back(out: Path) -> list[tuple[str, dict, bytes]]:
    """(shard, json, png) of every sample, read with plain tarfile."""
    samples = []
    for shard in _manifest(out)["shards"]:
        with tarfile.open(out / shard["name"]) as tf:
            files = defaultdict(dict)
            for m in tf.getmembers():
                key, ext = m.name.split(".", 1)
                files[key][ext] = tf.extractfile(m).read()
        assert len(files) == shard["samples"]
        samples += [(shard["name"], json.loads(f["json"]), f["png"]) for f in files.values()]
    return samples


def _no_leftovers(out: Path) -> None:
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".") and p.is_file()]
    temps = [p.name for p in (out / ".preprocess").iterdir() if p.name.startswith(".")]
    assert hidden == [] and temps == []


def test_layouts_counts_and_reports(reference, dev):
    m = _manifest(reference)
    layouts = {s["name"]: s["layout"] for s in m["sources"]}
    assert layouts == {
        "part1.zip": "dota",
        "part2.tar": "dota",
        "part3.tar": "dota",
        "UCMerced_LandUse.zip": "ucmerced",
        "gaofen": "gaofen",
        "bad.zip": "dota",
    }
    part3 = next(s for s in m["sources"] if s["name"] == "part3.tar")
    assert any("truncated" in n for n in part3["notes"])
    reasons = {(d["archive"], d["member"]): d["reason"] for d in m["skipped"]}
    assert "path traversal" in reasons["bad.zip", "../../escape/P9003.png"]
    assert "absolute path" in reasons["bad.zip", "/abs/P9004.png"]
    assert reasons["bad.zip", "images/readme.bin"].startswith("not an image")
    assert "unreadable image" in reasons["bad.zip", "images/P9001.png"]
    assert "unreadable image" in reasons["bad.zip", "images/P9002.png"]
    assert reasons["part3.tar", "part3/images/P7706.png"].startswith("truncated")
    dup = [r for (a, _), r in reasons.items() if "duplicate" in r]
    assert len(dup) == 1 and "P1888" in dup[0]
    assert m["ignored"] == {".txt (annotation/sidecar)": 5}  # labelTxt of parts 1 and 2
    conv = m["conversions"]
    assert conv["grayscale to RGB"] == 3  # P9005, P9006 (16-bit gray) and the SAR chip
    assert conv["uint16 to uint8 by 2-98% stretch"] == 3  # rgb16, 10-band, P9006
    assert conv["bands 3,2,1 (B,G,R,NIR) of 4"] == 1 and conv["bands 3,2,1 (B,G,R,NIR) of 10"] == 1
    assert m["config"] == json.loads(PreprocessConfig(**CONFIG).model_dump_json())

    samples = _read_back(reference)
    counts = defaultdict(lambda: defaultdict(lambda: {"images": set(), "samples": 0}))
    for _, meta, _ in samples:
        c = counts[meta["split"]][meta["dataset"]]
        c["images"].add(meta["image_id"])
        c["samples"] += 1
    assert m["counts"] == {
        split: {d: {"images": len(c["images"]), "samples": c["samples"]} for d, c in per.items()}
        for split, per in counts.items()
    }
    ids = {(meta["dataset"], meta["image_id"]) for _, meta, _ in samples}
    expected = {("dota", i) for i in ("P0706", "P1888", "P0130", "P0004__1__0___0", "P7130")}
    expected |= {("dota", "P9005"), ("dota", "P9006")}
    expected |= {("ucmerced", p.stem) for p in (dev / "ucm").glob("*.tif")}
    expected |= {("gaofen", s) for s in ("riocolor_rgb16", "paddlers_ssst_multispectral")}
    expected |= {("gaofen", "opengeos_naip_m_4709963_se_14_1_20100629")}
    expected |= {("gaofen", "gfc2021_sar_test_11")}
    assert ids == expected
    assert m["images"] == len(expected)
    assert sum(m["samples"].values()) == len(samples)


def test_splits_tiles_and_metadata(reference):
    samples = _read_back(reference)
    splits = defaultdict(set)
    tiles = defaultdict(set)
    for shard, meta, png in samples:
        assert shard.startswith(meta["split"] + "-")
        assert "." not in meta["key"]
        splits[meta["dataset"], meta["image_id"]].add(meta["split"])
        w, h = meta["image"]["width"], meta["image"]["height"]
        assert set(meta) >= {"dataset", "source", "split", "tile", "tile_size", "image", "stretch"}
        assert meta["source"]["archive"] and meta["source"]["member"]
        size = Image.open(io.BytesIO(png)).size
        assert size == (meta["tile"]["width"], meta["tile"]["height"])
        if meta["split"] == "train":
            assert size == (256, 256)
            tiles[meta["dataset"], meta["image_id"], w, h].add(
                (meta["tile"]["x"], meta["tile"]["y"])
            )
        else:
            assert meta["whole_image"] and size == (w, h)
    # Tiles of one source image never straddle splits.
    assert all(len(s) == 1 for s in splits.values())
    assert {next(iter(s)) for s in splits.values()} == {"train", "val", "test"}
    # Train images are covered to their edges: the full grid, nothing skipped in these images.
    for (_, _, w, h), origins in tiles.items():
        assert origins == set(tile_grid(max(h, 256), max(w, 256), 256, 256))
    assert _manifest(reference)["tiles_skipped"] == {}


def test_read_back_with_webdataset(reference):
    m = _manifest(reference)
    urls = [str(reference / s["name"]) for s in m["shards"]]
    n = 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("rgb8"):
        meta = sample["json"]
        assert sample["__key__"] == meta["key"]
        assert sample["png"].shape == (meta["tile"]["height"], meta["tile"]["width"], 3)
        n += 1
    assert n == sum(m["samples"].values())


def test_rerun_is_deterministic_and_idempotent(inputs, config_file, reference, tmp_path):
    other = tmp_path / "again"
    assert main([*_args(inputs, config_file), "--out", str(other)]) == 0
    assert _shard_set(other) == _shard_set(reference)
    assert (other / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    # Same folder again: every shard verified and kept, nothing rewritten.
    mtimes = {p.name: p.stat().st_mtime_ns for p in other.glob("*.tar")}
    result = preprocess(list(inputs.values()), other, PreprocessConfig(**CONFIG), progress=False)
    assert result.reused == len(mtimes)
    assert {p.name: p.stat().st_mtime_ns for p in other.glob("*.tar")} == mtimes
    _no_leftovers(other)


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.preprocess", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: the driver and the Ray it starts
    )


def test_resume_after_the_driver_is_killed(small_inputs, small_reference, tmp_path):
    out = tmp_path / "killed"
    proc = _spawn([*small_inputs, "--out", str(out), *SMALL_ARGS], tmp_path / "job.log")
    try:
        wait_for(lambda: len(list(out.glob("*.tar"))) >= 2, proc, "the job", interval=0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = {p.name for p in out.glob("*.tar")}
    total = len(_manifest(small_reference)["shards"])
    assert not (out / "manifest.json").exists() and 2 <= len(finished) < total
    # Re-run: the finished shards are verified and kept, the rest written, leftovers cleared.
    cfg = PreprocessConfig(shard_max_bytes=1024)
    result = preprocess(small_inputs, out, cfg, workers=1, progress=False)
    assert result.reused >= len(finished) - 1  # the last one may have lacked its record
    assert _shard_set(out) == _shard_set(small_reference)
    assert (out / "manifest.json").read_bytes() == (small_reference / "manifest.json").read_bytes()
    _no_leftovers(out)


def test_a_killed_ray_worker_is_retried(small_inputs, small_reference, tmp_path):
    out = tmp_path / "worker_killed"
    log = tmp_path / "job.log"
    proc = _spawn([*small_inputs, "--out", str(out), *SMALL_ARGS], log)
    driver = psutil.Process(proc.pid)

    def busy_worker() -> psutil.Process | None:
        for child in driver.children(recursive=True):
            try:
                if child.cmdline()[:1] == ["ray::Map(_build_row)"]:
                    return child
            except psutil.Error:
                continue
        return None

    try:
        wait_for(
            lambda: len(list(out.glob("*.tar"))) >= 2 and busy_worker() is not None,
            proc,
            "the job",
            interval=0.01,
        )
        busy_worker().kill()  # SIGKILL mid-task: Ray retries the task on a new worker
        assert proc.wait(timeout=180) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "worker died or was killed while executing a task" in log.read_text()
    assert _shard_set(out) == _shard_set(small_reference)
    _no_leftovers(out)


def test_ray_job_submit_gives_the_same_shards(small_inputs, small_reference, ray_head, tmp_path):
    address, env = ray_head
    out = tmp_path / "submitted"
    cmd = [
        str(VENV_BIN / "ray"), "job", "submit", "--address", address,
        "--working-dir", str(REPO_ROOT), "--",
        "python", "-m", "jobs.preprocess", *small_inputs, "--out", str(out), *SMALL_ARGS,
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout + done.stderr
    assert _shard_set(out) == _shard_set(small_reference)
    assert (out / "manifest.json").read_bytes() == (small_reference / "manifest.json").read_bytes()


def test_unusable_archive_is_a_clear_error(inputs, tmp_path, capsys):
    broken = tmp_path / "part7.zip"
    data = inputs["part1"].read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert main([str(inputs["ucm"]), str(broken), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "part7.zip" in err and "corrupt or truncated zip" in err
    assert not out.exists()  # nothing planned, nothing written
    assert main([str(tmp_path / "nope.tar"), "--out", str(out)]) == 2
    assert "nope.tar: no such file" in capsys.readouterr().err


def test_output_of_another_plan_needs_overwrite(inputs, local_ray, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(inputs["part1"]), "--out", str(out), "--no-progress"]) == 0
    first = _shard_set(out)
    args = [str(inputs["part1"]), "--out", str(out), "--no-progress", "--tile-size", "128"]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _shard_set(out) == first  # untouched
    assert main([*args, "--overwrite"]) == 0
    assert _manifest(out)["config"]["tile_size"] == 128 and _shard_set(out) != first
    _no_leftovers(out)


def test_registered_in_the_cli(capsys):
    from ltchm.cli import COMMANDS
    from ltchm.cli import main as cli

    assert COMMANDS["preprocess"][0] == "jobs.preprocess:main"
    with pytest.raises(SystemExit) as exit_:
        cli(["preprocess", "--help"])
    assert exit_.value.code == 0
    assert "ARCHIVE_OR_DIR" in capsys.readouterr().out


def test_nothing_written_is_a_failure_and_a_file_is_no_output_folder(tmp_path, capsys) -> None:
    """Every image unusable: the manifest says why, and the job fails (it used to print
    'Wrote 1 shards' and exit 0 with no sample). ``--out`` naming a file: one line."""
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(3):
        (junk / f"img{i}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    assert main([str(junk), "--out", str(out), "--local", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "no sample written (3 x unreadable image" in err and err.count("\n") == 1, err
    assert len(json.loads((out / "manifest.json").read_text())["skipped"]) == 3
    (tmp_path / "file").write_text("x")
    assert main([str(junk), "--out", str(tmp_path / "file"), "--local"]) == 2
    assert "is a file; name a folder" in capsys.readouterr().err


def test_a_split_whose_images_were_all_skipped_fails_naming_them(tmp_path, capsys) -> None:
    """Train has samples but every image the split gave to val is unreadable: the job fails
    (it used to succeed with an empty val split) and names each member with its reason."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        (src / f"img{i:02d}.png").write_bytes(_png(rng.integers(0, 255, (64, 64, 3), np.uint8)))
    config = tmp_path / "half.yaml"
    config.write_text("preprocess:\n  split_ratios: [0.5, 0.5, 0.0]\n")
    args = ["--config", str(config), "--local", "--no-progress", "--tile-size", "64"]
    assert main([str(src), "--out", str(tmp_path / "ok"), *args]) == 0
    val = {m["source"]["member"] for _, m, _ in _read_back(tmp_path / "ok") if m["split"] == "val"}
    assert val, "the seed's split gives this set a val image"
    for member in val:
        (src / member).write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    capsys.readouterr()
    assert main([str(src), "--out", str(tmp_path / "bad"), *args]) == 1
    err = capsys.readouterr().err
    assert f"split 'val' is empty: all {len(val)} of its images were skipped" in err, err
    assert all(f"  {m}: unreadable image" in err for m in val), err
    assert "split 'train'" not in err


def test_an_output_folder_inside_the_input_is_refused_before_work(tmp_path, capsys) -> None:
    """Shards written inside the folder being read would be read back as archives on the
    next run; an input inside the output folder could be cleared by ``--overwrite``."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(_png(np.zeros((64, 64, 3), np.uint8)))
    assert main([str(src), "--out", str(src / "shards"), "--local", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is inside the input folder" in err and err.count("\n") == 1, err
    assert not (src / "shards").exists()
    assert main([str(src / "a.png"), "--out", str(src), "--local", "--no-progress"]) == 2
    assert "holds the input" in capsys.readouterr().err
