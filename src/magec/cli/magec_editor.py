"""``--magec-editor`` for invert and evaluate: the option, and the library's check of the pack against it."""

from __future__ import annotations

import argparse

from magec.inversion.config import MAGEC_EDITORS
from magec.inversion.pack_checks import check_pack_editor as check_magec_editor

__all__ = ["add_magec_editor", "check_magec_editor"]  # the check is the library's, named as the CLI knew it


def add_magec_editor(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--magec-editor", choices=MAGEC_EDITORS, default="interfacegan", help=help_text)
