"""``magec align PHOTO --out OUT.png --size N``: FFHQ-style face alignment of a real photo."""

from __future__ import annotations

import argparse

from magec.cli.options import add_max_pixels, int_at_least, non_negative_int
from magec.validation import MAX_OUTPUT_SIDE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("align", help="crop and rotate a face photo the way FFHQ images are aligned")
    p.add_argument("photo", help="input photo (any common image format)")
    p.add_argument(
        "--out",
        required=True,
        help="output PNG (written atomically; an existing file is replaced only if magec wrote it)",
    )
    p.add_argument(
        "--size",
        type=int_at_least(8, MAX_OUTPUT_SIDE),
        default=1024,
        help=f"output side in pixels (default 1024, FFHQ's; 8 to {MAX_OUTPUT_SIDE})",
    )
    p.add_argument(
        "--face",
        type=non_negative_int,
        default=0,
        help="which face when several are found: 0 = largest (default), 1 = next largest, ...",
    )
    p.add_argument("--force", action="store_true", help="replace --out even if magec did not write it")
    add_max_pixels(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magec.faces.alignment import align_photo
    from magec.io.images import is_magec_png, save_png
    from magec.io.output_folder import check_not_inputs, check_output_file

    check_not_inputs([args.out], [args.photo])
    check_output_file(args.out, args.force, ours=is_magec_png)
    aligned = align_photo(args.photo, args.size, face_index=args.face, max_pixels=args.max_pixels)
    save_png(aligned.image, args.out)
    found = aligned.faces_found
    note = "" if found == 1 else f" (face {args.face} of {found} found, 0 = largest; --face picks another)"
    print(f"aligned {args.photo} -> {args.out} ({args.size}x{args.size}){note}")
    return 0
