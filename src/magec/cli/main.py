"""Entry point of the ``magec`` command: builds the sub-commands and turns MagecError into one line + exit 1."""

from __future__ import annotations

import argparse
import importlib
import sys

from magec import __version__
from magec.errors import MagecError

#: Sub-command modules, in help order; each has ``register(subparsers)`` setting ``func`` on its parser.
COMMAND_MODULES: tuple[str, ...] = (
    "magec.cli.cmd_evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magec", description="Editable GAN inversion with the MAGEC loss.")
    parser.add_argument("--version", action="version", version=f"magec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
