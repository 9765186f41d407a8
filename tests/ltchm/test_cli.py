from ltchm.cli import COMMANDS, main


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
