"""``magec edit``: apply InterfaceGAN, GANSpace or interpolation edits to an inverted latent."""

from __future__ import annotations

import argparse

from magec.cli.common import add_device_and_seed
from magec.editing import apply_edits, default_amounts, default_operations, write_edits
from magec.errors import MagecError
from magec.inversion.outputs import load_latent
from magec.pipeline import load_pipeline


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="edit an inverted latent and write the images and a grid", description=__doc__)
    p.add_argument("latent", help="a <name>.latent.safetensors written by `magec invert`")
    p.add_argument("--pack", required=True)
    p.add_argument("--editor", choices=("interfacegan", "ganspace", "interpolate"), default="interfacegan")
    p.add_argument("--operation", action="append", help="attribute (interfacegan), pcK (ganspace) or sample:SEED (interpolate); repeatable; default: the first four")
    p.add_argument("--amounts", help="comma-separated edit amounts (latent units; t in [0,1] for interpolate); default: symmetric steps up to the editor's default")
    p.add_argument("--out", required=True)
    add_device_and_seed(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    saved = load_latent(args.latent)
    pipeline = load_pipeline(args.pack, args.device, perceptual="describer-features")
    if saved.metadata.get("generator") not in (None, pipeline.generator.spec):
        raise MagecError(f"{args.latent}: inverted with generator {saved.metadata.get('generator')}, but the pack uses {pipeline.generator.spec}")
    operations = args.operation or default_operations(pipeline, args.editor, seed=args.seed)
    try:
        amounts = [float(a) for a in args.amounts.split(",")] if args.amounts else default_amounts(pipeline, args.editor)
    except ValueError:
        raise MagecError(f"--amounts {args.amounts!r}: expected comma-separated numbers") from None
    rows = apply_edits(pipeline, saved.latent, saved.space, saved.noise, args.editor, operations, amounts)
    projection = pipeline.generator.synthesize(saved.latent.to(pipeline.device), space=saved.space, noise=[n.to(pipeline.device) for n in saved.noise] if saved.noise else None)[0]
    title = f"{args.editor} edits of {saved.metadata.get('source_name', args.latent)} ({saved.metadata.get('method', '?')} projection)"
    written = write_edits(args.out, rows, saved.source, projection.detach(), title)
    print(f"wrote {len(written)} files to {args.out} (grid: {written[-1]})")
    return 0
