"""Archives and scenes in object storage: ``preprocess`` and ``compress-scenes`` read
``s3://`` and ``http(s)://`` inputs from an S3-compatible server started here on 127.0.0.1,
and give what they give for the same files on a local disk."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.transform import from_origin

from jobs.compress_scenes import compress_scenes
from jobs.preprocess import main as preprocess_main
from ltchm.codec import save_checkpoint
from ltchm.config import ScenesConfig
from ltchm.zoo import get_model
from pipeline.archives import ArchiveError, list_source
from pipeline.remote import gdal_env, gdal_path, is_url
from tests.processes import s3_server

ARGS = ["--workers", "1", "--shard-max-bytes", "200000", "--no-progress"]


def _tif(rng: np.random.Generator) -> bytes:
    base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    arr = np.kron(base, np.ones((32, 32, 1), np.uint8))  # blocky: compresses, not constant
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="TIFF")
    return buf.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A UC-Merced-like zip, a folder of images and a GeoTIFF scene, on local disk."""
    root = tmp_path_factory.mktemp("local")
    rng = np.random.default_rng(7)
    with zipfile.ZipFile(root / "UCMerced_LandUse.zip", "w") as zf:
        for cls in ("beach", "forest", "river"):
            for i in range(3):
                zf.writestr(f"UCMerced_LandUse/Images/{cls}/{cls}{i:02d}.tif", _tif(rng))
    (root / "folder" / "sub").mkdir(parents=True)
    for i in range(3):
        (root / "folder" / "sub" / f"img{i}.tif").write_bytes(_tif(rng))
    profile = {
        "driver": "GTiff", "height": 90, "width": 100, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": from_origin(500000, 4600000, 2.0, 2.0),
    }  # fmt: skip
    with rasterio.open(root / "scene.tif", "w", **profile) as dst:
        dst.write(rng.integers(0, 255, (3, 90, 100), dtype=np.uint8))
    return root


@pytest.fixture(scope="module")
def bucket(files: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same files in a bucket of a local S3 server; the environment points at it as a
    user's shell would (``AWS_ENDPOINT_URL`` and credentials)."""
    import fsspec
    import s3fs

    mp = pytest.MonkeyPatch()
    with s3_server(tmp_path_factory.mktemp("s3")) as endpoint:
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "ltchm-test")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "ltchm-test-secret")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for key in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING", "AWS_PROFILE"):
            mp.delenv(key, raising=False)
        s3fs.S3FileSystem.clear_instance_cache()
        fs = fsspec.filesystem("s3")
        fs.mkdir("archive")
        fs.put(str(files) + "/", "archive/raw/", recursive=True)
        try:
            yield endpoint
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            mp.undo()


def _shards(out: Path) -> dict[str, str]:
    manifest = json.loads((out / "manifest.json").read_text())
    on_disk = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("*.tar")}
    assert on_disk == {s["name"]: s["sha256"] for s in manifest["shards"]}
    return on_disk


def test_urls_and_their_gdal_paths() -> None:
    assert is_url("s3://b/k.zip") and is_url("https://h/x.tif") and is_url("gs://b/k")
    assert not is_url("/data/x.zip") and not is_url("file:///data/x.zip")
    assert not is_url("relative/s3:/x")
    assert gdal_path("s3://b/dir/k.tif") == "/vsis3/b/dir/k.tif"
    assert gdal_path("gs://b/k.tif") == "/vsigs/b/k.tif"
    assert gdal_path("https://h/x.tif") == "/vsicurl/https://h/x.tif"


def test_gdal_gets_the_endpoint_boto3_uses(monkeypatch) -> None:
    monkeypatch.delenv("AWS_S3_ENDPOINT", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert gdal_env() == {
        "AWS_S3_ENDPOINT": "127.0.0.1:9000", "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE"
    }  # fmt: skip
    monkeypatch.setenv("AWS_S3_ENDPOINT", "minio:9000")  # the user's own GDAL setting wins
    assert gdal_env() == {}


def test_preprocess_from_s3_gives_the_local_shards(files, bucket, local_ray, tmp_path) -> None:
    local, remote = tmp_path / "local", tmp_path / "remote"
    inputs = ["UCMerced_LandUse.zip", "folder"]
    assert preprocess_main([*(str(files / i) for i in inputs), "--out", str(local), *ARGS]) == 0
    urls = [f"s3://archive/raw/{i}" for i in inputs]
    assert preprocess_main([*urls, "--out", str(remote), *ARGS]) == 0
    assert _shards(remote) == _shards(local) and _shards(local)
    sources = json.loads((remote / "manifest.json").read_text())["sources"]
    assert {s["name"] for s in sources} == {"UCMerced_LandUse.zip", "folder"}


def test_preprocess_over_http(files, bucket, local_ray, tmp_path) -> None:
    """A plain http(s) URL (here the server's path-style URL of a public object)."""
    import fsspec

    fsspec.filesystem("s3").chmod("archive/raw/UCMerced_LandUse.zip", acl="public-read")
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert preprocess_main([str(files / "UCMerced_LandUse.zip"), "--out", str(local), *ARGS]) == 0
    url = f"{bucket}/archive/raw/UCMerced_LandUse.zip"
    assert preprocess_main([url, "--out", str(remote), *ARGS]) == 0
    assert _shards(remote) == _shards(local)


def test_a_missing_object_is_one_clear_line(bucket, tmp_path, capsys) -> None:
    with pytest.raises(ArchiveError, match=r"s3://archive/raw/nope\.zip: no such file"):
        list_source("s3://archive/raw/nope.zip")
    assert preprocess_main(["s3://archive/raw/nope.zip", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "s3://archive/raw/nope.zip" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_compress_scenes_from_s3_equals_local(files, bucket, local_ray, tmp_path) -> None:
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(get_model("ltchm-baseline", N=8, context="checkerboard"), ckpt, lmbda=512)
    cfg = ScenesConfig(tile_size=64, overlap=8, verify=True, workers=1)
    local = compress_scenes([files / "scene.tif"], tmp_path / "local", str(ckpt), cfg,
                            use_ray=False, progress=False)  # fmt: skip
    remote = compress_scenes(["s3://archive/raw/scene.tif"], tmp_path / "remote", str(ckpt), cfg,
                             use_ray=True, progress=False)  # fmt: skip
    assert not local.failed and not remote.failed
    a = (tmp_path / "local" / "scene.ltcs").read_bytes()
    b = (tmp_path / "remote" / "scene.ltcs").read_bytes()
    assert a == b
