import shutil
from pathlib import Path

from ltchm.cli import COMMANDS, main
from ltchm.imageio import list_images


def test_help_and_unknown(capsys) -> None:
    assert main([]) == 0
    assert "complexity" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_list_models(capsys) -> None:
    assert main(["list-models"]) == 0
    out = capsys.readouterr().out
    assert "ltchm-hpham-nogca" in out and "cheng2020-attn" in out


def test_every_command_resolves() -> None:
    import importlib

    for target, _ in COMMANDS.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_demo_runs_on_a_folder(tmp_path: Path, ucm_dir: Path, capsys) -> None:
    for p in list_images(ucm_dir)[:2]:
        shutil.copy(p, tmp_path)
    out_dir = tmp_path / "out"
    argv = ["demo", "--data", str(tmp_path), "--steps", "2", "--N", "16", "--out", str(out_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "bpp (file)" in out and "bpp (estimated)" in out and "PSNR" in out
    assert sum(".tif " in line for line in out.splitlines()) == 2
    assert len(list(out_dir.glob("*.ltc"))) == 2 and len(list(out_dir.glob("*.png"))) == 2
    assert (out_dir / "model.pt").is_file()
