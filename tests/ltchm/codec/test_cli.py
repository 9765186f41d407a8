"""``ltchm encode`` / ``decode`` / ``eval-images`` in-process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ltchm.cli import main
from ltchm.codec import ImageCodec, load_checkpoint
from ltchm.imageio import list_images, read_image


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "store"
    monkeypatch.setenv("LTCHM_MODEL_STORE", str(path))
    return path


def test_encode_then_decode_finds_the_model(tmp_path, store, checkpoints, ucm_dir, capsys) -> None:
    image = list_images(ucm_dir)[0]
    ltc, png = tmp_path / "a.ltc", tmp_path / "a.png"
    ckpt = checkpoints["checkerboard"]
    assert main(["encode", str(image), str(ltc), "--model", str(ckpt)]) == 0
    assert "bpp" in capsys.readouterr().out
    assert len(list(store.glob("*.pt"))) == 1
    assert main(["decode", str(ltc), str(png)]) == 0
    expected = ImageCodec(load_checkpoint(ckpt)).decode(ltc.read_bytes())
    decoded = np.asarray(Image.open(png))
    assert np.array_equal(
        decoded, (expected.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    )
    # a TIFF works as well
    assert main(["decode", str(ltc), str(tmp_path / "a.tif"), "--model", str(ckpt)]) == 0
    assert read_image(tmp_path / "a.tif").shape == (3, 256, 256)


def test_decode_finds_the_model_from_the_file(tmp_path, store, checkpoints, ucm_dir, capsys):
    """A file names its model: with the local store gone, decode loads the checkpoint the file
    records; with that gone too, one line says what to do. --info shows the record."""
    ckpt = tmp_path / "model.pt"
    shutil.copy(checkpoints["autoregressive"], ckpt)
    ltc = tmp_path / "a.ltc"
    assert main(["encode", str(list_images(ucm_dir)[1]), str(ltc), "--model", str(ckpt)]) == 0
    capsys.readouterr()
    assert main(["decode", str(ltc), "--info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"]["source"] == str(ckpt.resolve())
    assert info["model"]["context"] == "autoregressive" and info["model"]["name"] == "ltchm"
    assert info["bytes"] == ltc.stat().st_size and info["width"] == 256
    shutil.rmtree(store)
    assert main(["decode", str(ltc), str(tmp_path / "a.png")]) == 0
    assert read_image(tmp_path / "a.png").shape == (3, 256, 256)
    shutil.rmtree(store, ignore_errors=True)
    ckpt.unlink()
    assert main(["decode", str(ltc), str(tmp_path / "b.png")]) == 1
    err = capsys.readouterr().err
    assert "not in the local model store" in err and "pass --model" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "b.png").exists()


def test_outputs_never_replace_inputs(tmp_path, store, checkpoints, ucm_dir, capsys) -> None:
    image = tmp_path / "img.tif"
    shutil.copy(list_images(ucm_dir)[0], image)
    before = image.read_bytes()
    ckpt = str(checkpoints["checkerboard"])
    assert main(["encode", str(image), str(image), "--model", ckpt]) == 1
    assert "is the input file" in capsys.readouterr().err
    assert image.read_bytes() == before
    ltc = tmp_path / "a.ltc"
    assert main(["encode", str(image), str(ltc), "--model", ckpt]) == 0
    packed = ltc.read_bytes()
    for out, says in ((ltc, "is the input file"), (tmp_path, "is a folder"),
                      (tmp_path / "a.xyz", "unsupported output format '.xyz'")):  # fmt: skip
        assert main(["decode", str(ltc), str(out)]) == 1
        assert says in capsys.readouterr().err
    assert ltc.read_bytes() == packed
    # an existing output is replaced only when asked
    assert main(["encode", str(image), str(ltc), "--model", ckpt]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["encode", str(image), str(ltc), "--model", ckpt, "--overwrite"]) == 0
    png = tmp_path / "a.png"
    assert main(["decode", str(ltc), str(png)]) == 0
    assert main(["decode", str(ltc), str(png)]) == 1
    assert main(["decode", str(ltc), str(png), "--overwrite"]) == 0


def test_decode_corrupt_file(tmp_path, store, capsys) -> None:
    (tmp_path / "bad.ltc").write_bytes(b"\x89LTC\r\n\x1a\n" + b"\x01" * 40)
    assert main(["decode", str(tmp_path / "bad.ltc"), str(tmp_path / "out.png")]) == 1
    assert "checksum" in capsys.readouterr().err


def test_rgba_needs_drop_alpha(tmp_path, store, checkpoints, capsys) -> None:
    Image.fromarray(np.full((70, 90, 4), 120, np.uint8), mode="RGBA").save(tmp_path / "x.png")
    ckpt = str(checkpoints["checkerboard"])
    args = ["encode", str(tmp_path / "x.png"), str(tmp_path / "x.ltc"), "--model", ckpt]
    assert main(args) == 1
    assert "compress-scenes" in capsys.readouterr().err
    assert not (tmp_path / "x.ltc").exists()
    assert main([*args, "--drop-alpha"]) == 0


def test_eval_images(tmp_path, checkpoints, ucm_dir, capsys) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in list_images(ucm_dir)[:2]:
        shutil.copy(p, folder)
    csv = tmp_path / "out.csv"
    ckpt = str(checkpoints["checkerboard"])
    assert main(["eval-images", str(folder), "--model", ckpt, "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "est.bpp" in out and "mean" in out
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("image,width,height,bytes,bpp,bpp_estimated,psnr,ms_ssim")
    assert len(lines) == 3
    bpp, est = (float(v) for v in lines[1].split(",")[4:6])
    assert 0 < est <= bpp < 1.2 * est + 0.01  # the file costs what the model predicts
