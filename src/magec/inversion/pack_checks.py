"""Checks of a pack against an inversion's settings, read from its manifest alone (before any model loads).

An unreadable manifest is left to ``Pack.load``, which names the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

from magec.errors import MagecError


def _manifest(pack: str | Path) -> object:
    try:
        return json.loads((Path(pack) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def check_pack_editor(editor: str, pack: str | Path | None) -> None:
    """Refuse ``--magec-editor styleflow`` with a pack prepared without StyleFlow."""
    if editor != "styleflow" or pack is None:
        return
    data = _manifest(pack)
    if isinstance(data, dict) and "styleflow_config" not in data:
        raise MagecError(
            f"{pack}: --magec-editor styleflow needs a pack with a StyleFlow editor (this one was prepared with "
            "--no-styleflow; re-run `magec prepare` without it)"
        )


def check_pack_attributes(pack: str | Path | None, names: tuple[str, ...] | None) -> None:
    """Refuse ``--attributes`` the pack's describer does not have (the embedded pack, None: checked against its
    layout when it loads)."""
    if not names or pack is None:
        return
    try:
        known = [a["name"] for a in _manifest(pack)["describer"]["layout"]["attributes"]]  # type: ignore[index]
    except (KeyError, TypeError):
        return
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MagecError(
            f"argument --attributes: {', '.join(unknown)} not among the pack's attributes ({', '.join(known)})"
        )
