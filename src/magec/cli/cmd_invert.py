"""``magec invert``: project images into the generator's latent space (magec | no-magec | im2stylegan++)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from magec.cli.options import (
    add_device_and_seed,
    add_force,
    add_max_pixels,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from magec.errors import MagecError
from magec.inversion.config import METHODS

if TYPE_CHECKING:
    import torch

#: The files ``magec invert`` writes per input image.
OUTPUT_SUFFIXES = (".latent.safetensors", ".png", ".json")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invert", help="invert images with the MAGEC loss or a baseline", description=__doc__)
    p.add_argument("images", nargs="+", help="image files (any common format; centre-cropped to a square and resized)")
    p.add_argument("--pack", required=True)
    p.add_argument(
        "--method",
        choices=METHODS,
        default="magec",
        help="magec (default), no-magec, im2stylegan++, or magec+pti / no-magec+pti: then pivotal tuning of the "
        "generator around the latent (saved as <name>.pti.safetensors, used by `magec edit`)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="folder for <name>.latent.safetensors, <name>.png, <name>.json (names keep the inputs' relative "
        "paths; magec-index.json maps inputs to outputs)",
    )
    p.add_argument("--batch-size", type=positive_int, default=8, help="images optimised together (default 8)")
    p.add_argument(
        "--steps-scale",
        type=positive_float,
        default=1.0,
        help="multiply every phase's steps (default 1: the paper's protocol)",
    )
    p.add_argument(
        "--lambda-magec", type=non_negative_float, help="weight of the MAGEC term in every phase (paper: 3e-4)"
    )
    p.add_argument(
        "--lambda-id", type=non_negative_float, help="weight of the identity term in every phase (paper: 3e-4)"
    )
    p.add_argument("--perceptual", default="auto", help="auto | lpips-vgg[:PATH] | describer-features")
    p.add_argument(
        "--identity",
        default="none",
        help="none | dlib (dlib's face recognition, ships on PyPI) | arcface:PATH | moco:PATH",
    )
    p.add_argument("--describer", help="override the pack's describer spec (must have the same descriptor layout)")
    framing = p.add_mutually_exclusive_group()
    framing.add_argument(
        "--align", action="store_true", help="FFHQ-align each photo first (dlib 68 landmarks), for FFHQ generators"
    )
    framing.add_argument(
        "--face-crop", action="store_true", help="crop each photo so its face sits where the embedded DCGAN's faces sit"
    )
    p.add_argument(
        "--face",
        type=non_negative_int,
        default=0,
        help="with --align/--face-crop: which face, largest first (default 0)",
    )
    add_max_pixels(p)
    add_force(p)
    add_device_and_seed(p)
    p.set_defaults(func=run)


def read_input(path: Path, size: int, args: argparse.Namespace) -> tuple[torch.Tensor, dict]:
    """One input image as a (1, 3, size, size) tensor, framed as the options say, and metadata recording
    where the face was found in the photo (``framing``, for ``magec edit --paste-back``)."""
    from magec.io.images import image_size, load_image, pil_to_tensor

    if args.align:
        from magec.faces.alignment import align_photo

        aligned = align_photo(path, size, face_index=args.face, max_pixels=args.max_pixels)
        return pil_to_tensor(aligned.image), {"framing": "align", **aligned.framing.to_dict()}
    if args.face_crop:
        from magec.faces.crop import frame_face_crop
        from magec.faces.detection import DETECTION_SIDE
        from magec.io.images import read_image

        photo = read_image(path, args.max_pixels, reduce_to=DETECTION_SIDE)
        try:
            crop, framing = frame_face_crop(photo, size, face_index=args.face)
        except MagecError as exc:
            raise MagecError(f"{path}: {exc}") from None
        full = image_size(path, args.max_pixels)
        framing = framing.scaled(full[0] / photo.width, full)
        return pil_to_tensor(crop), {"framing": "face-crop", **framing.to_dict()}
    return load_image(path, size, args.max_pixels), {}


def run(args: argparse.Namespace) -> int:
    from magec.inversion.config import method_config
    from magec.io.images import read_image
    from magec.io.output_folder import OutputFolder, check_not_inputs, unique_output_names

    paths = [Path(p) for p in args.images]
    names = unique_output_names(paths)
    config = method_config(args.method, args.steps_scale, lambda_magec=args.lambda_magec, lambda_id=args.lambda_id)
    out = OutputFolder.open(args.out, "inversion", args.force)
    suffixes = OUTPUT_SUFFIXES + ((".pti.safetensors",) if args.method.endswith("+pti") else ())
    claims = {f"{name}{suffix}": str(path.resolve()) for name, path in zip(names, paths) for suffix in suffixes}
    out.check_claims(claims)
    check_not_inputs([out.target(c) for c in claims], paths)
    for path in paths:  # every input is decoded once (and refused, with its name) before any model loads
        read_image(path, args.max_pixels, reduce_to=1024)

    import torch

    from magec.inversion import ProgressBar, invert
    from magec.inversion.outputs import write_inversion_outputs
    from magec.pipeline import load_pipeline

    pipeline = load_pipeline(
        args.pack, args.device, perceptual=args.perceptual, identity=args.identity, describer=args.describer
    )
    size = pipeline.generator.resolution
    framed = [read_input(p, size, args) for p in paths]  # every face is found before anything is written
    images = [tensor for tensor, _ in framed]
    out.claim(claims)
    settings = {**pipeline.settings(), "pack": str(args.pack), "seed": args.seed, "steps_scale": args.steps_scale}
    from magec.inversion.pti import PTIConfig

    pti = PTIConfig().scaled(args.steps_scale)
    for start in range(0, len(images), args.batch_size):
        batch_names = names[start : start + args.batch_size]
        batch = torch.cat(images[start : start + args.batch_size])
        bar = ProgressBar(f"invert [{args.method}] {start + len(batch_names)}/{len(names)}")
        result = invert(pipeline, batch, args.method, config, seed=args.seed, callback=bar, pti=pti)
        sources = [str(p) for p in paths[start : start + args.batch_size]]
        framing = [meta for _, meta in framed[start : start + args.batch_size]]
        write_inversion_outputs(
            out.path, batch_names, batch, result, settings, source_files=sources, extra=framing, base=pipeline.generator
        )
        for name in batch_names:
            print(f"wrote {out.path / name}.{{latent.safetensors,png,json}}")
    return 0
