"""``magec edit``: apply InterfaceGAN, GANSpace, SeFa, StyleFlow or interpolation edits (or a direction file's)
to an inverted latent, and paste them back into the photo."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from magec import validation
from magec.cli.options import add_device_and_seed, add_force, add_max_pixels, add_pack, add_precision, resolve_pack
from magec.errors import MagecError
from magec.latent.kinds import EDITORS, TARGET

if TYPE_CHECKING:
    from magec.pipeline import Pipeline

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


def pasted_name(name: str) -> str:
    """``interfacegan_male_+3.00.png`` -> ``interfacegan_male_+3.00.pasted.png``."""
    return name[: -len(".png")] + ".pasted.png"


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
    from dataclasses import replace

    from magec.io.output_folder import OutputFolder

    out = OutputFolder.open(args.out, "edits", args.force)
    if args.editor.startswith("boundary:"):  # sized from its header, before torch and the models load
        from magec.io.arrays import npy_header

        npy_header(args.editor.partition(":")[2])
    from magec.inversion.outputs import check_latent_fits, check_tuned_pair, load_latent

    saved = load_latent(args.latent)
    delta = check_tuned_pair(args.latent, args.untuned)  # a +pti latent's tuned generator, checked before models load
    from magec.pipeline import load_pipeline
    from magec.render import (
        apply_edits,
        default_amounts,
        default_operations,
        edit_file_name,
        planned_edit_files,
        render_latent,
        write_edits,
    )

    resolve_pack(args)
    pipeline = load_pipeline(args.pack, args.device, perceptual="describer-features", precision=args.precision)
    check_latent_fits(saved, pipeline.generator, args.latent)
    if args.editor.startswith("boundary:"):
        from magec.latent.boundaries import load_direction

        boundary = load_direction(args.editor.partition(":")[2], pipeline.generator.latent_dim)
        pipeline = replace(pipeline, editors={**pipeline.editors, "boundary": boundary})  # the pack is left as is
        args.editor = "boundary"
    if args.editor not in pipeline.editors:
        raise MagecError(f"{args.pack}: this pack has no {args.editor} editor (has: {', '.join(pipeline.editors)})")
    if delta is not None:  # a +pti inversion: edits are rendered with the generator tuned for this photo
        from magec.generators.delta import apply_delta

        pipeline = replace(pipeline, generator=apply_delta(pipeline.generator, delta))
    editor = pipeline.editors[args.editor]
    operations = args.operation or default_operations(pipeline, args.editor, seed=args.seed)
    if editor.traits.family != TARGET:  # a target editor's operations are "sample:<seed>", not listed
        unknown = [op for op in operations if op not in editor.operations()]
        if unknown:
            raise MagecError(f"--operation {unknown[0]!r}: {args.editor} offers {', '.join(editor.operations())}")
    amounts = args.amounts or default_amounts(pipeline, args.editor)
    if args.editor != "boundary":
        _note_beyond_range(pipeline, args.editor, operations, amounts)
    source = str(Path(args.latent).resolve())
    planned = planned_edit_files(args.editor, operations, amounts)
    framing = None
    if args.paste_back:
        from magec.faces.frame import FaceFrame

        photo_meta = saved.metadata.get("photo")
        if not photo_meta:
            raise MagecError(f"{args.latent}: --paste-back needs a latent inverted with --align or --face-crop")
        framing = FaceFrame.from_dict(photo_meta)
        from magec.io.images import image_size

        if tuple(image_size(args.paste_back, args.max_pixels)) != tuple(framing.photo_size):
            raise MagecError(
                f"{args.paste_back}: not the photo that was inverted (it was "
                f"{framing.photo_size[0]}x{framing.photo_size[1]})"
            )
        planned += [pasted_name(n) for n in planned if n != "grid.png"] + [pasted_name("projection.png")]
    with out.releasing():  # an early end withdraws the claims it did not write
        out.claim({name: source for name in planned})
        rows = apply_edits(pipeline, saved.latent, saved.space, saved.noise, args.editor, operations, amounts)
        projection = render_latent(pipeline, saved.latent, saved.space, saved.noise, {})[0]
        name, method = saved.metadata.get("source_name", args.latent), saved.metadata.get("method", "?")
        title = f"{args.editor} edits of {name} ({method} projection)"
        written = write_edits(out.path, rows, saved.source, projection.detach(), title)
        if framing is not None:
            from magec.faces.paste import paste_into_photo
            from magec.io.images import save_png, tensor_to_pil

            crops = {pasted_name(edit_file_name(e.editor, e.operation, e.amount)): e.image for row in rows for e in row}
            crops[pasted_name("projection.png")] = projection
            pasted = paste_into_photo(
                args.paste_back,
                [tensor_to_pil(c) for c in crops.values()],
                framing,
                args.max_pixels,
                projection=tensor_to_pil(projection),
                mode=args.paste_mode,
            )
            written += [save_png(img, out.path / name) for name, img in zip(crops, pasted)]
    print(f"wrote {len(written)} files to {args.out} (grid: {out.path / 'grid.png'})")
    return 0


def _note_beyond_range(pipeline: Pipeline, editor: str, operations: list[str], amounts: list[float]) -> None:
    """One line when some edits go past the useful range the pack measured (the studio's slider ends)."""
    import sys

    from magec.render import slider_specs

    specs = {s.key: s for s in slider_specs(pipeline) if s.measured}
    beyond = [(s, a) for op in operations if (s := specs.get((editor, op))) for a in amounts if not s.covers(a)]
    if beyond:
        spec, amount = beyond[0]
        print(
            f"magec: note: {len(beyond)} of the edits go past the pack's measured useful range, e.g. {spec.operation} "
            f"{amount:+g} (its range: {spec.minimum:+g} to {spec.maximum:+g}); faces may break there",
            file=sys.stderr,
        )
