from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ltchm.cli import COMMANDS, main
from ltchm.codec import save_checkpoint
from ltchm.zoo import get_model


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


# -- user mistakes: one line on stderr naming the problem, a non-zero exit, no traceback -------
@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mistakes")
    torch.manual_seed(0)
    model = get_model("ltchm-baseline", N=8, context="checkerboard")
    save_checkpoint(model, root / "model.pt", lmbda=512)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "rgb.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8)).save(root / "rgba.png")
    (root / "text.ltc").write_text("not a container")
    (root / "text.ltcs").write_text("not a container")
    (root / "bad.yaml").write_text("train:\n  stepz: 3\n")
    (root / "negative.yaml").write_text("train:\n  steps: -1\n")
    (root / "broken.yaml").write_text("train: [unclosed\n")
    (root / "empty").mkdir()
    return {"root": root}


MISTAKES: list[tuple[str, str]] = [
    # (command line, what the one line must name); {root} is a scratch folder
    ("encode {root}/nope.png {root}/o.ltc --model {root}/model.pt", "nope.png"),
    ("encode {root}/rgb.png {root}/o.ltc --model {root}/missing.pt", "missing.pt"),
    ("encode {root}/rgb.png {root}/o.ltc --model no-such-model", "no-such-model"),
    ("encode {root}/rgb.png {root}/o.ltc --model {root}/bad.yaml", "bad.yaml"),
    ("encode {root}/rgba.png {root}/o.ltc --model {root}/model.pt", "band"),
    ("decode {root}/nope.ltc {root}/o.png", "nope.ltc"),
    ("decode {root}/text.ltc {root}/o.png --model {root}/model.pt", "text.ltc"),
    ("eval-images {root}/nowhere --model {root}/model.pt", "nowhere"),
    ("preprocess {root}/nope.zip --out {root}/shards --local", "nope.zip"),
    ("preprocess {root}/empty --out {root}/shards --config {root}/bad.yaml", "stepz"),
    ("train --shards {root}/no-shards --lambdas 512", "no-shards"),
    ("train --shards {root}/empty --lambdas 999", "999"),
    ("train --shards {root}/empty --lambdas 512 --config {root}/negative.yaml", "steps"),
    ("train --shards {root}/empty --lambdas 512 --config {root}/broken.yaml", "broken.yaml"),
    ("train --shards {root}/empty --lambdas 512 --config {root}/absent.yaml", "absent.yaml"),
    ("evaluate --data {root}/nowhere --out {root}/ev --no-mlflow", "nowhere"),
    ("evaluate --data {root}/empty --out {root}/ev --codecs jpeg9 --no-mlflow", "jpeg9"),
    ("evaluate --data {root}/empty --out {root}/ev --max-images 0", "max-images"),
    ("compress-scenes {root}/nope/x.tif --model {root}/model.pt --out {root}/c", "x.tif"),
    ("decompress-scene {root}/nope.ltcs {root}/o.tif", "nope.ltcs"),
    ("decompress-scene {root}/text.ltcs {root}/o.tif", "text.ltcs"),
    ("promote ltchm-lambda512 7 --tracking-uri sqlite:///{root}/store.db", "ltchm-lambda512"),
    ("complexity --model no-such-model", "no-such-model"),
]


@pytest.mark.parametrize(("line", "named"), MISTAKES, ids=[m[0].split()[0] for m in MISTAKES])
def test_a_mistake_is_one_clear_line(files, line: str, named: str, capsys) -> None:
    """At least 20 mistakes across the commands, each answered by one line."""
    argv = line.format(root=files["root"]).split()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own one-line errors (after the usage line)
        code = exc.code
    err = capsys.readouterr().err
    assert code != 0, line
    assert "Traceback" not in err, err
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert named.lower() in last.lower(), err
    assert last.startswith(("ltchm", "usage:")) or f"ltchm {argv[0]}" in err, err


def test_debug_shows_the_traceback(files, monkeypatch, capsys) -> None:
    from ltchm.imageio import ImageFormatError

    root = files["root"]
    argv = f"encode {root}/rgba.png {root}/o.ltc --model {root}/model.pt".split()
    assert main(argv) == 1 and "(--debug: traceback)" in capsys.readouterr().err
    with pytest.raises(ImageFormatError, match="rgba"):
        main([*argv, "--debug"])
    monkeypatch.setenv("LTCHM_DEBUG", "1")
    with pytest.raises(ImageFormatError, match="rgba"):
        main(argv)


def test_help_loads_no_heavy_library() -> None:
    """Every command's --help is instant: nothing imports torch, Ray or MLflow before the
    arguments are parsed (a deterministic stand-in for timing it)."""
    import subprocess
    import sys

    code = (
        "import sys, contextlib, io\n"
        "from ltchm.cli import COMMANDS, main\n"
        "heavy = ('torch', 'ray', 'mlflow', 'compressai', 'rasterio')\n"
        "for name in COMMANDS:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main([name, '--help'])\n"
        "    loaded = [m for m in heavy if m in sys.modules]\n"
        "    print(name, ','.join(loaded) or '-')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = dict(line.split() for line in out.stdout.splitlines())
    assert set(loaded) == set(COMMANDS)
    assert all(v == "-" for v in loaded.values()), loaded
