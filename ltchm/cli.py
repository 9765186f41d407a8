"""The one command-line interface: ``ltchm <command> [args]``.

Each command lives in the module that implements it and exposes ``main(argv) -> int``; this
dispatcher imports only the module of the command being run, so ``ltchm --help`` is instant
and every command can be called in-process (``main(["complexity", "--N", "128"])``).
"""

from __future__ import annotations

import importlib
import os
import sys

__all__ = ["COMMANDS", "main"]

# command -> (module:function, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("jobs.demo:main", "run the main job end to end on the embedded defaults"),
    "list-models": ("ltchm.zoo:main", "list the registered models and their config keys"),
    "complexity": ("ltchm.complexity_cli:main", "parameters, FLOPs and MACs beside the paper"),
    "encode": ("ltchm.codec.cli:encode_main", "compress an RGB image into an .ltc file"),
    "decode": ("ltchm.codec.cli:decode_main", "decompress an .ltc file into PNG/TIFF"),
    "eval-images": ("ltchm.codec.cli:eval_images_main", "real vs estimated bpp, PSNR, MS-SSIM"),
    "train": ("jobs.train:main", "train LTCHM with DeepSpeed on Ray, tracked in MLflow"),
    "promote": ("jobs.training.promote:main", "move a registered model's champion alias"),
    "preprocess": ("jobs.preprocess:main", "raw DOTA/UC-Merced/Gaofen archives -> shards, on Ray"),
    "evaluate": ("jobs.evaluate:main", "RD curves, BD-rate vs JPEG2000 and the classical codecs"),
    "compress-scenes": ("jobs.compress_scenes:main", "GeoTIFF scenes -> .ltcs files, on Ray"),
    "decompress-scene": ("pipeline.scenes.decompress:main", ".ltcs scene/window -> GeoTIFF/COG"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: ltchm <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'ltchm <command> --help' for a command's options. Errors are one line;"]
    lines += ["add --debug (or set LTCHM_DEBUG=1) for the traceback."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from importlib.metadata import version

        print(version("ltchm"))
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"ltchm: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    debug = "--debug" in rest or os.environ.get("LTCHM_DEBUG", "") not in ("", "0")
    rest = [a for a in rest if a != "--debug"]
    from ltchm.runtime import tune_allocator

    tune_allocator()
    target, _ = COMMANDS[command]
    module_name, func_name = target.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        result = func(rest)
    except KeyboardInterrupt:
        print(f"ltchm {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # Commands turn the mistakes they expect into one line themselves; whatever escapes
        # (a library's error on a bad input) is one line too, the traceback on request.
        if debug:
            raise
        print(f"ltchm {command}: error: {one_line(exc)} (--debug: traceback)", file=sys.stderr)
        return 1
    return int(result or 0)


def one_line(exc: BaseException) -> str:
    """The exception as one line: its message's first line (or its type), named by type
    when the message alone would not say what happened."""
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"no such file or folder: {exc.filename}"
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if not text:
        return type(exc).__name__
    if isinstance(exc, (KeyError, IndexError, AttributeError, TypeError, AssertionError)):
        return f"{type(exc).__name__}: {text}"
    return text


if __name__ == "__main__":
    sys.exit(main())
