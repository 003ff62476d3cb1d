"""``--magec-editor`` for invert and evaluate: the option, and a check of the pack made before any model loads."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from magec.errors import MagecError
from magec.inversion.config import MAGEC_EDITORS


def add_magec_editor(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--magec-editor", choices=MAGEC_EDITORS, default="interfacegan", help=help_text)


def check_magec_editor(editor: str, pack: str | Path | None) -> None:
    """Refuse ``--magec-editor styleflow`` with a pack prepared without StyleFlow (read from its manifest only).

    An unreadable manifest is left to ``Pack.load``, which names the problem.
    """
    if editor != "styleflow" or pack is None:
        return
    manifest = Path(pack) / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return
    if isinstance(data, dict) and "styleflow_config" not in data:
        raise MagecError(
            f"{pack}: --magec-editor styleflow needs a pack with a StyleFlow editor (this one was prepared with "
            "--no-styleflow; re-run `magec prepare` without it)"
        )
