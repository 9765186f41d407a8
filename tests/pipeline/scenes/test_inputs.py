"""What a batch compresses: the rasters of files, folders and archives, named uniquely."""

from __future__ import annotations

import zipfile
from pathlib import Path

from pipeline.scenes.inputs import list_scenes


def test_rasters_of_every_kind_of_input(tmp_path: Path) -> None:
    (tmp_path / "folder" / "sub").mkdir(parents=True)
    for p in ("folder/a.tif", "folder/sub/b.TIFF", "folder/notes.txt", "one.tif"):
        (tmp_path / p).write_bytes(b"x")
    with zipfile.ZipFile(tmp_path / "arch.zip", "w") as zf:
        zf.writestr("scenes/c.tif", b"x")
        zf.writestr("scenes/d.jp2", b"x")
        zf.writestr("../evil.tif", b"x")
    inputs = [tmp_path / "folder", tmp_path / "one.tif", tmp_path / "arch.zip"]
    scenes, bad = list_scenes([*inputs, tmp_path / "missing.tif"])
    assert [(s.key, s.out) for s in scenes] == [
        ("folder/a.tif", "folder/a.ltcs"),
        ("folder/sub/b.TIFF", "folder/sub/b.ltcs"),
        ("one.tif", "one.ltcs"),
        ("arch.zip/scenes/c.tif", "arch.zip/scenes/c.ltcs"),
        ("arch.zip/scenes/d.jp2", "arch.zip/scenes/d.ltcs"),
    ]
    assert scenes[3].gdal_path == f"/vsizip/{tmp_path / 'arch.zip'}/scenes/c.tif"
    names = [name for name, _ in bad]
    assert any("evil" in n for n in names) and str(tmp_path / "missing.tif") in names


def test_two_scenes_for_one_output_name(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a.tif").write_bytes(b"x")
    (tmp_path / "s" / "a.tiff").write_bytes(b"x")
    scenes, bad = list_scenes([tmp_path / "s"])
    assert [s.key for s in scenes] == ["s/a.tif"]
    assert bad == [("s/a.tiff", "output name s/a.ltcs is already taken by s/a.tif")]
