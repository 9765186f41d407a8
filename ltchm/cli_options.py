"""Options shared by several commands, defined once so that they read the same everywhere.

Each ``add_*`` adds one option to a command's parser; the commands' ``main(argv)`` stay thin.
Only argparse is imported here: ``ltchm <command> --help`` must not load torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = [
    "MODEL_SPEC_HELP",
    "add_address",
    "add_config",
    "add_device",
    "add_model",
    "add_progress",
    "add_tracking_uri",
    "config_default",
]

MODEL_SPEC_HELP = (
    "a checkpoint (.pt), an MLflow model URI (models:/ltchm-lambda512@champion), a shipped "
    "model (pretrained:<set>/<lambda>) or a registry name (with --config)"
)


def config_default(dotted: str) -> str:
    """``"(default: X from the config)"`` for an option that overrides config key ``dotted``
    (``"scenes.tile_size"``): the help shows the value a command runs with."""
    from ltchm.config import Config

    section, key = dotted.split(".")
    return f"(default: {getattr(getattr(Config(), section), key)}, config {dotted})"


def add_model(
    parser: argparse.ArgumentParser, *, required: bool = True, help: str | None = None
) -> None:
    """``--model SPEC``: the model to code with."""
    parser.add_argument("--model", required=required, metavar="SPEC", help=help or MODEL_SPEC_HELP)


def add_config(parser: argparse.ArgumentParser, *, help: str, repeatable: bool = False) -> None:
    """``--config FILE``: a YAML config (later files override earlier ones when repeatable)."""
    help = f"{help}; a file, or a shipped config by name (lambda_512, cpu, demo)"
    if repeatable:
        parser.add_argument(
            "--config", type=Path, action="append", metavar="FILE", help=f"{help} (repeatable)"
        )
    else:
        parser.add_argument("--config", type=Path, metavar="FILE", help=help)


def add_device(parser: argparse.ArgumentParser, *, default: str | None = "cpu") -> None:
    """``--device``: the torch device models run on."""
    shown = default or "cuda if available, else cpu"
    parser.add_argument(
        "--device", default=default, help=f"torch device: cpu, cuda, cuda:1 (default: {shown})"
    )


def add_address(parser: argparse.ArgumentParser) -> None:
    """``--address``: the Ray cluster to join."""
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (default: $RAY_ADDRESS, else a Ray started on this machine)",
    )


DEFAULT_STORE = "$MLFLOW_TRACKING_URI, else sqlite:///mlruns.db"


def add_tracking_uri(parser: argparse.ArgumentParser, *, default: str = DEFAULT_STORE) -> None:
    """``--tracking-uri``: the MLflow store."""
    parser.add_argument(
        "--tracking-uri", metavar="URI", help=f"MLflow tracking URI (default: {default})"
    )


def add_progress(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` (alias ``--quiet``): no progress bar (logs get a line every 30 s)."""
    parser.add_argument(
        "--no-progress",
        "--quiet",
        dest="no_progress",
        action="store_true",
        help="no progress bar",
    )


def add_overwrite(parser: argparse.ArgumentParser, *, help: str | None = None) -> None:
    """``--overwrite``: replace an existing output (refused by default)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=help or "replace the output file if it exists (never an input)",
    )
