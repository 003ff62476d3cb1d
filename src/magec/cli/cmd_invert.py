"""``magec invert``: project images into the generator's latent space (magec | no-magec | im2stylegan++, or
magec+pti | no-magec+pti: followed by pivotal tuning of the generator around the latent; or from an encoder's
code: encoder (the code alone, one forward pass) | encoder+magec (MAGEC refining it, a quarter of the steps) |
encoder+magec+pti)."""

from __future__ import annotations

import argparse
import sys

from magec.cli.magec_editor import add_magec_editor
from magec.cli.options import (
    add_attributes_option,
    add_device_and_seed,
    add_force,
    add_max_pixels,
    add_pack,
    add_pipeline_options,
    add_precision,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    resolve_pack,
)
from magec.cli.workers import add_worker_options, worker_options
from magec.inversion.config import METHODS
from magec.inversion.folder import OUTPUT_SUFFIXES

__all__ = ["OUTPUT_SUFFIXES", "register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invert", help="invert images with the MAGEC loss or a baseline", description=__doc__)
    p.add_argument(
        "images",
        nargs="+",
        help="image files, folders (searched recursively) or glob patterns such as 'photos/**/*.jpg' (any common "
        "format; centre-cropped to a square and resized); rerunning skips images already done with the same settings",
    )
    add_pack(p)
    p.add_argument(
        "--method",
        choices=METHODS,
        default="magec",
        help="magec (default), no-magec, im2stylegan++, or magec+pti / no-magec+pti: then pivotal tuning of the "
        "generator around the latent (saved as <name>.pti.safetensors, used by `magec edit`); from an encoder "
        "(--init): encoder (its code alone), encoder+magec (MAGEC from its code, a quarter of magec's steps), "
        "encoder+magec+pti",
    )
    p.add_argument(
        "--init",
        metavar="mean|encoder|ENC.safetensors|e4e:PATH",
        help="where the optimisation starts: mean (the generator's mean; default for the paper's methods), encoder "
        "(the pack's own encoder; default for the encoder methods), a magec encoder file (`magec train-encoder`), "
        "or e4e:PATH / psp:PATH (e4e's or pSp's checkpoint); recorded in the outputs",
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
        "--lambda-id",
        type=non_negative_float,
        help="weight of the identity term in every phase that optimises the latent: both phases of magec and "
        "no-magec (default 3e-4, the paper's), im2stylegan++'s latent phase (default 0); never a noise phase",
    )
    add_attributes_option(p)
    add_magec_editor(
        p,
        "editor whose edits the MAGEC term uses: interfacegan (the paper) or styleflow (the pack's flow)",
    )
    add_pipeline_options(p)
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
    add_precision(p)
    add_worker_options(p)
    p.set_defaults(func=run)


def _say(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"magec: {line}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from dataclasses import fields
    from functools import partial

    from magec.inversion.folder_run import FolderSettings, invert_folder

    workers = worker_options(args)
    runner = None
    if workers is not None:
        from magec.distributed.runs import invert_on_workers

        runner = partial(invert_on_workers, workers)

    def embedded_pack() -> str:  # no --pack: the embedded default's, said in one line once the inputs were read
        resolve_pack(args)
        return str(args.pack)

    settings = FolderSettings(**{f.name: getattr(args, f.name) for f in fields(FolderSettings)})
    invert_folder(args.images, args.out, settings, runner=runner, resolve_pack=embedded_pack, say=_say, show=print)
    return 0
