"""``magec align PHOTO --out OUT.png --size N``: FFHQ-style face alignment of a real photo."""

from __future__ import annotations

import argparse

from magec.io.alignment import align_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("align", help="crop and rotate a face photo the way FFHQ images are aligned")
    p.add_argument("photo", help="input photo (any common image format)")
    p.add_argument("--out", required=True, help="output PNG (written atomically)")
    p.add_argument("--size", type=int, default=1024, help="output side in pixels (default 1024, FFHQ's)")
    p.add_argument("--face", type=int, default=0, help="which face when several are found: 0 = largest (default), 1 = next largest, ...")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    found = align_file(args.photo, args.out, size=args.size, face_index=args.face)
    note = "" if found == 1 else f" (face {args.face} of {found} found, 0 = largest; --face picks another)"
    print(f"aligned {args.photo} -> {args.out} ({args.size}x{args.size}){note}")
    return 0
