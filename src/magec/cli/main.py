"""Entry point of the ``magec`` command: builds the sub-commands and turns MagecError into one line + exit 1."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from magec import __version__
from magec.errors import MagecError

#: Sub-command modules, in help order; each has ``register(subparsers)`` setting ``func`` on its parser.
COMMAND_MODULES: tuple[str, ...] = (
    "magec.cli.cmd_demo",
    "magec.cli.cmd_prepare",
    "magec.cli.cmd_preview",
    "magec.cli.cmd_invert",
    "magec.cli.cmd_edit",
    "magec.cli.cmd_evaluate",
    "magec.cli.cmd_bench",
    "magec.cli.cmd_convert",
    "magec.cli.cmd_align",
    "magec.cli.cmd_train_describer",
    "magec.cli.cmd_doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magec", description="Editable GAN inversion with the MAGEC loss.")
    parser.add_argument("--version", action="version", version=f"magec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _setup_logging() -> None:
    """Library notes (e.g. a perceptual-loss fallback) reach the user as ``magec: ...`` lines on stderr."""
    logger = logging.getLogger("magec")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("magec: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging()
    try:
        return int(args.func(args) or 0)
    except MagecError as exc:
        print(f"magec: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("magec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
