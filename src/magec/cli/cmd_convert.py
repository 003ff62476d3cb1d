"""``magec convert IN OUT.safetensors``: a StyleGAN2 checkpoint (rosinality .pt, NVIDIA .pkl) in magec's format."""

from __future__ import annotations

import argparse

from magec.cli.options import int_at_least, positive_int
from magec.errors import MagecError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a StyleGAN2 checkpoint to magec safetensors",
        description="Read a StyleGAN2 generator (rosinality .pt with g_ema, NVIDIA stylegan2-ada/stylegan3 .pkl, "
        "or magec .safetensors; the format is detected from the contents) and write it as safetensors with "
        "the architecture in the metadata. NVIDIA pickles are read with a restricted unpickler: their embedded "
        "code is never run.",
    )
    parser.add_argument("input", help="checkpoint to read")
    parser.add_argument(
        "output", help="safetensors file to write (atomically; an existing file is replaced only if magec wrote it)"
    )
    parser.add_argument(
        "--size",
        type=int_at_least(4, 4096),
        default=None,
        help="rosinality only: output resolution (default: from the keys)",
    )
    parser.add_argument(
        "--channel-multiplier",
        type=positive_int,
        default=None,
        help="rosinality only: channel multiplier (default: from the shapes)",
    )
    parser.add_argument(
        "--n-mlp", type=positive_int, default=None, help="rosinality only: mapping layers (default: from the keys)"
    )
    parser.add_argument("--force", action="store_true", help="replace OUTPUT even if magec did not write it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magec.io.checkpoints import safetensors_format
    from magec.io.output_folder import check_not_inputs, check_output_file

    if not str(args.output).endswith(".safetensors"):
        raise MagecError(f"{args.output}: output must end in .safetensors")
    check_not_inputs([args.output], [args.input])
    check_output_file(args.output, args.force, ours=lambda p: (safetensors_format(p) or "").startswith("magec"))
    from magec.generators.stylegan2.loaders import convert_checkpoint

    overrides = {
        k: v
        for k, v in (("size", args.size), ("channel_multiplier", args.channel_multiplier), ("n_mlp", args.n_mlp))
        if v is not None
    }
    model = convert_checkpoint(args.input, args.output, **overrides)
    c = model.config
    print(
        f"{args.output}: StyleGAN2 {c.resolution}x{c.resolution}, w {c.style_dim}-d, {c.n_latent} W+ codes, "
        f"w_avg {'stored' if model.w_avg_source == 'checkpoint' else 'not stored (computed on use)'}"
    )
    return 0
