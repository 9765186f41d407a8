"""Output paths are checked against the inputs before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltchm.atomic import check_output, check_output_dir


def test_an_output_folder_inside_an_input_folder_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "scenes"
    (src / "sub").mkdir(parents=True)
    for out in (src, src / "out", src / "sub" / "deeper"):
        with pytest.raises(ValueError, match="is inside the input folder"):
            check_output_dir(out, src)
    check_output_dir(tmp_path / "out", src)  # beside it: fine
    check_output_dir(src / "out", "s3://bucket/scenes")  # object storage is never local


def test_an_output_folder_holding_an_input_is_refused_where_the_command_clears_it(
    tmp_path: Path,
) -> None:
    scene = tmp_path / "work" / "a.tif"
    scene.parent.mkdir()
    scene.write_bytes(b"x")
    with pytest.raises(ValueError, match="holds the input"):
        check_output_dir(tmp_path / "work", scene, clears=True)
    with pytest.raises(ValueError, match="holds the input"):
        check_output_dir(tmp_path, scene.parent, clears=True)
    check_output_dir(tmp_path / "work", scene)  # a writer that never clears may share it


def test_an_output_file_that_is_an_input_or_exists(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    with pytest.raises(ValueError, match="is the input file"):
        check_output(tmp_path / "." / "a.png", image)
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        check_output(image, tmp_path / "b.png")
    check_output(image, tmp_path / "b.png", overwrite=True)
    with pytest.raises(ValueError, match="is a folder"):
        check_output(tmp_path, image)
