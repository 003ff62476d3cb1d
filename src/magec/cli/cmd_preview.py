"""``magec preview``: PNGs of a pack: generated faces with F's predictions, and one strip per editor."""

from __future__ import annotations

import argparse

from magec.cli.common import add_device_and_seed
from magec.pipeline import load_pipeline
from magec.preview import write_preview


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="write PNGs of generated faces with F's predictions and editor strips", description=__doc__)
    p.add_argument("--pack", required=True)
    p.add_argument("--out", required=True, help="folder for samples.png and edits-<editor>.png")
    p.add_argument("-n", type=int, default=24, help="generated faces in samples.png (default 24)")
    add_device_and_seed(p, seed=1234)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.pack, args.device, perceptual="describer-features")
    for path in write_preview(pipeline, args.out, n=args.n, seed=args.seed):
        print(f"wrote {path}")
    return 0
