"""``magec invert``: project images into the generator's latent space (magec | no-magec | im2stylegan++)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from magec.cli.common import add_device_and_seed
from magec.errors import MagecError
from magec.inversion import METHODS, invert, method_config
from magec.inversion.outputs import write_inversion_outputs
from magec.io.images import load_image, pil_to_tensor, read_image
from magec.pipeline import load_pipeline


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invert", help="invert images with the MAGEC loss or a baseline", description=__doc__)
    p.add_argument("images", nargs="+", help="image files (any common format; centre-cropped to a square and resized)")
    p.add_argument("--pack", required=True)
    p.add_argument("--method", choices=METHODS, default="magec")
    p.add_argument("--out", required=True, help="folder for <name>.latent.safetensors, <name>.png, <name>.json")
    p.add_argument("--batch-size", type=int, default=8, help="images optimised together (default 8)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every phase's steps (default 1: the paper's protocol)")
    p.add_argument("--lambda-magec", type=float, help="weight of the MAGEC term in every phase (paper: 3e-4)")
    p.add_argument("--lambda-id", type=float, help="weight of the identity term in every phase (paper: 3e-4)")
    p.add_argument("--perceptual", default="auto", help="auto | lpips-vgg[:PATH] | describer-features")
    p.add_argument("--identity", default="none", help="none | arcface:PATH | moco:PATH")
    p.add_argument("--describer", help="override the pack's describer spec (must have the same descriptor layout)")
    framing = p.add_mutually_exclusive_group()
    framing.add_argument("--align", action="store_true", help="FFHQ-align each photo first (dlib 68 landmarks), for FFHQ generators")
    framing.add_argument("--face-crop", action="store_true", help="crop each photo so its face sits where the embedded DCGAN's faces sit")
    p.add_argument("--face", type=int, default=0, help="with --align/--face-crop: which face, largest first (default 0)")
    add_device_and_seed(p)
    p.set_defaults(func=run)


def unique_names(paths: list[Path]) -> list[str]:
    names, seen = [], {}
    for path in paths:
        stem = path.stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


def read_input(path: Path, size: int, args: argparse.Namespace) -> torch.Tensor:
    """One input image as a (1, 3, size, size) tensor, framed as the options say."""
    if not (args.align or args.face_crop):
        return load_image(path, size)
    photo = read_image(path)
    try:
        if args.align:
            from magec.io.alignment import align_face

            framed = align_face(photo, size, face_index=args.face)
        else:
            from magec.io.face_crop import crop_to_chip_box

            framed = crop_to_chip_box(photo, size, face_index=args.face)
    except MagecError as exc:
        raise MagecError(f"{path}: {exc}") from None
    return pil_to_tensor(framed)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise MagecError("--batch-size must be at least 1")
    pipeline = load_pipeline(args.pack, args.device, perceptual=args.perceptual, identity=args.identity, describer=args.describer)
    paths = [Path(p) for p in args.images]
    size = pipeline.generator.resolution
    images = [read_input(p, size, args) for p in paths]  # every input is read before anything is written
    names = unique_names(paths)
    config = method_config(args.method, args.steps_scale, lambda_magec=args.lambda_magec, lambda_id=args.lambda_id)
    for start in range(0, len(images), args.batch_size):
        batch = torch.cat(images[start : start + args.batch_size])
        result = invert(pipeline, batch, args.method, config, seed=args.seed)
        settings = {**pipeline.settings(), "pack": str(args.pack), "seed": args.seed, "steps_scale": args.steps_scale}
        write_inversion_outputs(args.out, names[start : start + args.batch_size], batch, result, settings)
        for name in names[start : start + args.batch_size]:
            print(f"wrote {Path(args.out) / name}.{{latent.safetensors,png,json}}")
    return 0
