"""``magec doctor``: which optional weight files are present, and where to put the missing ones.

``--checkpoint FILE`` also opens a generator checkpoint the way ``--generator stylegan2:FILE`` would (format
sniffed from its bytes, layout checked, nothing executed) and says what it is, or why it cannot be used
(exit 1). e4e's and pSp's encoder checkpoints are recognised too, and checked against the generators given
with them."""

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
        help="also check a generator checkpoint you mean to use, or e4e's / pSp's encoder checkpoint (checked against "
        "the generators given with it) (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def check_checkpoints(paths: list[str]) -> list[tuple[str, bool, str, str]]:
    """(path, usable, what it is or why not, "generator" or "encoder") for each checkpoint, opened as the loaders
    open it. A file that is not a generator but e4e's or pSp's encoder checkpoint is described as that, and checked
    against the usable generators given with it."""
    if not paths:
        return []
    from magec.encoders.e4e import describe_encoder_checkpoint
    from magec.errors import MagecError
    from magec.generators.stylegan2.loaders import describe_checkpoint, load_stylegan2

    found: list[tuple[str, bool, str, str]] = []
    for path in paths:
        try:
            found.append((path, True, describe_checkpoint(path), "generator"))
        except MagecError as exc:
            found.append((path, False, str(exc).removeprefix(f"{path}: "), "generator"))
    generators = None
    for i, (path, ok, _, _) in enumerate(found):
        if ok:
            continue
        if generators is None:  # loaded once, only when some file may be an encoder to check against them
            generators = [load_stylegan2(p) for p, usable, _, kind in found if usable and kind == "generator"]
        try:
            what = describe_encoder_checkpoint(path, generators)
        except MagecError as exc:
            found[i] = (path, False, str(exc).removeprefix(f"{path}: "), "encoder")
            continue
        if what is not None:
            found[i] = (path, True, what, "encoder")
    return found


def run(args: argparse.Namespace) -> int:
    from magec.errors import MagecError
    from magec.weights import list_weight_files, weight_files_as_dicts

    checked = check_checkpoints(args.checkpoint)
    unusable = [c for c in checked if not c[1]]
    if args.json:  # every finding is in the JSON; the exit code says whether a checkpoint is unusable
        entries = weight_files_as_dicts()
        entries += [
            {"checkpoint": path, "kind": kind, "usable": ok, "what" if ok else "problem": text}
            for path, ok, text, kind in checked
        ]
        print(json.dumps(entries, indent=2))
        return 1 if unusable else 0
    files = list_weight_files()
    for w in files:
        status = "present" if w.present else ("MISSING (required)" if w.required else "missing")
        print(f"[{status}] {w.name}: {w.purpose}")
        print(f"    {w.path}")
        if not w.present:
            print(f"    -> {w.how_to_get}")
    for path, ok, text, kind in checked:
        print(f"[{'usable' if ok else 'UNUSABLE'}] {kind} checkpoint {path}: {text}")
    if unusable:  # the run's one error line names the (first) file that cannot be used
        path, _, problem, _ = unusable[0]
        more = f" (and {len(unusable) - 1} more checkpoints, listed above)" if len(unusable) > 1 else ""
        raise MagecError(f"{path}: {problem}{more}")
    missing_required = [w for w in files if w.required and not w.present]
    return 1 if missing_required else 0
