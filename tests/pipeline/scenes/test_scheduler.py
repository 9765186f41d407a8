"""The batch's driver loop in this process (no Ray): files, rows, records, retries, order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from tqdm import tqdm

from ltchm.config import ScenesConfig
from ltchm.zoo import get_model
from pipeline.scenes.container import SceneReader
from pipeline.scenes.inputs import Scene, list_scenes
from pipeline.scenes.resume import fingerprint, load_record
from pipeline.scenes.scheduler import LocalPool, Outcome, SceneBatch, WorkItem
from pipeline.scenes.tiles import TileCoder
from pipeline.scenes.worker import SceneWorker, WorkerDied

CFG = ScenesConfig(tile_size=64, overlap=8, chunk_tiles=2)


def write_scene(path: Path, height: int, width: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (96 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.float32)
    data = np.stack([base + 20 * b for b in range(3)]) + rng.normal(0, 4, (3, height, width))
    profile = {
        "driver": "GTiff", "height": height, "width": width, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": from_origin(500000, 4600000, 2.0, 2.0),
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.clip(data, 0, 255).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def worker() -> SceneWorker:
    torch.manual_seed(0)
    model = get_model("ltchm-baseline", N=8, context="checkerboard")
    return SceneWorker.from_coder(TileCoder(model, "cpu"), CFG)


@pytest.fixture
def scenes(tmp_path: Path) -> list[Scene]:
    src = tmp_path / "src"
    src.mkdir()
    write_scene(src / "a.tif", 150, 130, seed=1)
    write_scene(src / "b.tif", 70, 200, seed=2)
    (src / "c.tif").write_bytes(b"not a tiff at all")
    found, bad = list_scenes([src])
    assert not bad and [s.key for s in found] == ["src/a.tif", "src/b.tif", "src/c.tif"]
    return found


def run_batch(
    pool: Any, scenes: list[Scene], out: Path, worker: SceneWorker
) -> dict[int, dict[str, Any]]:
    fp = fingerprint(CFG, worker.weights_hash())
    records = {i: load_record(out, s, fp) for i, s in enumerate(scenes)}
    with tqdm(total=0, disable=True) as bar:
        return SceneBatch(pool, scenes, records, out, CFG, fp, bar).run()


def test_scenes_compressed_and_a_bad_one_reported(tmp_path, scenes, worker) -> None:
    out = tmp_path / "out"
    rows = run_batch(LocalPool(worker), scenes, out, worker)
    assert [rows[i]["status"] for i in range(3)] == ["done", "done", "failed"]
    assert "c.tif" in rows[2]["error"] and "\n" not in rows[2]["error"]
    for row, (h, w) in zip([rows[0], rows[1]], [(150, 130), (70, 200)], strict=True):
        with SceneReader(out / row["output"]) as reader:
            assert (reader.header.height, reader.header.width) == (h, w)
            assert "32633" in (reader.header.crs_wkt or "") and len(reader) == row["tiles"] > 1
        assert row["bytes"] == (out / row["output"]).stat().st_size
        assert len(row["psnr_db"]) == 3 and row["psnr_min_db"] > 0  # verified
    # nothing of the failed scene, no temporary files
    assert not (out / "src" / "c.ltcs").exists()
    assert sorted(p.name for p in (out / "src").iterdir()) == ["a.ltcs", "b.ltcs"]


def test_rerun_skips_what_its_records_prove(tmp_path, scenes, worker) -> None:
    out = tmp_path / "out"
    first = run_batch(LocalPool(worker), scenes[:2], out, worker)
    again = run_batch(LocalPool(worker), scenes[:2], out, worker)
    assert [again[i]["status"] for i in range(2)] == ["skipped", "skipped"]
    assert again[0]["output_sha256"] == first[0]["output_sha256"]
    # a damaged output is coded again, the intact one is not
    (out / "src" / "b.ltcs").write_bytes(b"damaged")
    third = run_batch(LocalPool(worker), scenes[:2], out, worker)
    assert [third[i]["status"] for i in range(2)] == ["skipped", "done"]
    assert third[1]["output_sha256"] == first[1]["output_sha256"]  # deterministic


class ScriptedPool(LocalPool):
    """The local pool, with outcomes reordered or replaced by a script (what Ray may do)."""

    def __init__(self, worker: SceneWorker, script: Callable[[list[Outcome]], list[Outcome]]):
        super().__init__(worker)
        self.script = script
        self.outcomes: list[Outcome] = []
        self.calls: list[WorkItem] = []

    def free_slots(self) -> int:
        return 4 - len(self.outcomes)

    def submit(self, item: WorkItem) -> None:
        self.calls.append(item)
        super().submit(item)
        self.outcomes.append(LocalPool.next(self))

    def busy(self) -> bool:
        return bool(self.outcomes)

    def next(self) -> Outcome:
        self.outcomes = self.script(self.outcomes)
        return self.outcomes.pop(0)


def test_tiles_are_written_in_raster_order_whatever_order_they_come_back(
    tmp_path, scenes, worker
) -> None:
    in_order = run_batch(LocalPool(worker), scenes[:1], tmp_path / "a", worker)
    reversed_pool = ScriptedPool(worker, lambda outcomes: outcomes[::-1])
    shuffled = run_batch(reversed_pool, scenes[:1], tmp_path / "b", worker)
    encodes = [c.priority[2] for c in reversed_pool.calls if c.kind == "encode"]
    assert len(encodes) > 2
    assert shuffled[0]["output_sha256"] == in_order[0]["output_sha256"]


def test_a_dead_worker_is_retried_once_then_the_scene_fails(tmp_path, scenes, worker) -> None:
    def die(times: int) -> Callable[[list[Outcome]], list[Outcome]]:
        left = {"n": times}

        def script(outcomes: list[Outcome]) -> list[Outcome]:
            item = outcomes[0][0]
            if item.kind == "encode" and item.priority[2] == 0 and left["n"] > 0:
                left["n"] -= 1
                return [(item, None, WorkerDied("actor died"), True), *outcomes[1:]]
            return outcomes

        return script

    once = run_batch(ScriptedPool(worker, die(1)), scenes[:1], tmp_path / "once", worker)
    assert once[0]["status"] == "done"
    twice = run_batch(ScriptedPool(worker, die(2)), scenes[:1], tmp_path / "twice", worker)
    assert twice[0]["status"] == "failed" and "died twice" in twice[0]["error"]
    assert not list((tmp_path / "twice").rglob("*.ltcs"))
