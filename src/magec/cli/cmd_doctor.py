"""``magec doctor``: which optional weight files are present, and where to put the missing ones."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="list the optional weight files magec can use and whether they are present")
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="PATH",
        help="also check a generator checkpoint you mean to use (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magec.weights import list_weight_files, weight_files_as_dicts

    if args.json:
        print(json.dumps(weight_files_as_dicts(args.checkpoint), indent=2))
        return 0
    files = list_weight_files(args.checkpoint)
    for w in files:
        status = "present" if w.present else ("MISSING (required)" if w.required else "missing")
        print(f"[{status}] {w.name}: {w.purpose}")
        print(f"    {w.path}")
        if not w.present:
            print(f"    -> {w.how_to_get}")
    missing_required = [w for w in files if w.required and not w.present]
    return 1 if missing_required else 0
