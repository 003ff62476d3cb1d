"""``magec edit``: apply InterfaceGAN, GANSpace, SeFa, StyleFlow or interpolation edits (or a direction file's)
to an inverted latent, and paste them back into the photo."""

from __future__ import annotations

import argparse
from pathlib import Path

from magec import validation
from magec.cli.options import add_device_and_seed, add_force, add_max_pixels, add_pack, add_precision, resolve_pack
from magec.errors import MagecError
from magec.latent.kinds import EDITORS

#: ``magec.faces.paste.PASTE_MODES``, spelled here so that ``--help`` loads no image code (a test checks they agree).
PASTE_MODES = ("sharp", "composite")


def editor_spec(text: str) -> str:
    """One of the pack's editors, or ``boundary:FILE.npy`` (a direction file: InterfaceGAN's format)."""
    if text in EDITORS or (text.startswith("boundary:") and len(text) > len("boundary:")):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(EDITORS)} or boundary:FILE.npy")


def parse_amounts(text: str) -> list[float]:
    """``--amounts`` as finite numbers within +-MAX_EDIT_AMOUNT (one line naming the bad value otherwise)."""
    amounts = []
    for part in text.split(","):
        try:
            amounts.append(
                validation.in_range(
                    "--amounts value", part.strip(), -validation.MAX_EDIT_AMOUNT, validation.MAX_EDIT_AMOUNT
                )
            )
        except MagecError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (expected comma-separated numbers)") from None
    return amounts


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="edit an inverted latent and write the images and a grid", description=__doc__)
    p.add_argument("latent", help="a <name>.latent.safetensors written by `magec invert`")
    add_pack(p)
    p.add_argument(
        "--editor",
        type=editor_spec,
        default="interfacegan",
        help=f"{', '.join(EDITORS)} (default interfacegan), or boundary:FILE.npy: any (1, L) or (L,) direction file",
    )
    p.add_argument(
        "--operation",
        action="append",
        help="attribute (interfacegan, styleflow), pcK (ganspace), sefaK (sefa) or sample:SEED (interpolate); "
        "repeatable; default: every attribute (interfacegan, styleflow, as the studio's sliders), else the first four",
    )
    p.add_argument(
        "--amounts",
        type=parse_amounts,
        help="comma-separated edit amounts (latent units; t in [0,1] for interpolate); "
        "default: symmetric steps up to the editor's default",
    )
    p.add_argument("--out", required=True, help="folder for one PNG per edit and grid.png")
    p.add_argument(
        "--paste-back",
        metavar="PHOTO",
        help="also write each edit (and the projection) pasted back into PHOTO, the photo that was inverted with "
        "--align or --face-crop, at its full resolution: <edit>.pasted.png",
    )
    p.add_argument(
        "--untuned",
        action="store_true",
        help="for a +pti latent: edit with the untuned generator, ignoring <name>.pti.safetensors (without it, a "
        "missing or mismatched tuned generator is an error)",
    )
    p.add_argument(
        "--paste-mode",
        choices=PASTE_MODES,
        default="sharp",
        help="sharp (default): the edit applied to the photo, photo + mask x (edited - projection) from the "
        "generator, so the photo keeps its sharpness and an amount of 0 gives the photo back; composite: the "
        "generator's edited face blended over the photo",
    )
    add_max_pixels(p)
    add_force(p)
    add_device_and_seed(p)
    add_precision(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from magec.editing import EditSettings, edit_latent_file

    def embedded_pack() -> str:  # no --pack: the embedded default's, said in one line once the latent was read
        resolve_pack(args)
        return str(args.pack)

    settings = EditSettings(
        editor=args.editor,
        operations=args.operation,
        amounts=args.amounts,
        pack=args.pack,
        paste_back=args.paste_back,
        paste_mode=args.paste_mode,
        untuned=args.untuned,
        max_pixels=args.max_pixels,
        force=args.force,
        device=args.device,
        seed=args.seed,
        precision=args.precision,
    )
    written = edit_latent_file(
        args.latent,
        args.out,
        settings,
        resolve_pack=embedded_pack,
        say=lambda line: print(f"magec: {line}", file=sys.stderr),
    )
    print(f"wrote {len(written)} files to {args.out} (grid: {Path(args.out) / 'grid.png'})")
    return 0
