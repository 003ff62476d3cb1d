"""Argument types and options shared by several commands.

Types turn a bad value into one argparse error line before anything is loaded; they use the same checks
(``magec.validation``) as the library's config dataclasses, so the CLI and the API refuse the same things.
Nothing here imports torch: ``magec --help`` and a refused option stay fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from magec import validation
from magec.errors import MagecError
from magec.inversion.pack_checks import check_pack_attributes as check_pack_attributes  # the library's check
from magec.validation import DEFAULT_MAX_PIXELS


def _typed(check: Callable[..., Any], *bounds: Any, metavar: str = "value") -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return check(metavar, text, *bounds)
        except MagecError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = check.__name__  # argparse names the type in its messages
    return convert


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number >= minimum (and <= maximum)."""
    return _typed(validation.integer, minimum, maximum)


finite_float = _typed(validation.finite)
positive_float = _typed(validation.positive)
non_negative_float = _typed(validation.non_negative)
positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def device_spec(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (checked for form here; for presence when torch loads)."""
    kind, _, index = text.partition(":")
    if kind in ("auto", "cpu", "mps") and not index or kind == "cuda" and (not index or index.isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected auto, cpu, cuda, cuda:N or mps")


def add_device_and_seed(parser: argparse.ArgumentParser, seed: int = 0) -> None:
    parser.add_argument(
        "--device", type=device_spec, default="auto", help="cpu, cuda, cuda:N or auto (CUDA when present; default)"
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=seed, help=f"seed for every random choice (default {seed})"
    )


def add_force(parser: argparse.ArgumentParser, what: str = "--out") -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"write into an existing {what} that holds other files (magec never replaces a file it did not write)",
    )


def add_max_pixels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-pixels",
        type=int_at_least(1),
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse input images above N pixels before decoding them (default {DEFAULT_MAX_PIXELS:,}; ~3 bytes each)",
    )


def add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="the generator's arithmetic: fp32 (default) or bf16 (StyleGAN2 only: about half the memory, faster on "
        "GPUs; see the README's GPU section for what it costs in reconstruction)",
    )


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """``--perceptual``, ``--identity`` and ``--describer``: the parts of the pipeline that ``pipeline_options``
    passes on, besides the pack, device and precision."""
    parser.add_argument(
        "--perceptual",
        default="auto",
        help="perceptual loss / LPIPS network: auto | lpips-vgg[:PATH] | describer-features",
    )
    parser.add_argument(
        "--identity",
        default="auto",
        help="identity loss for the inversions: auto (default: dlib for the embedded face generator, else none) | "
        "none | dlib (dlib's face recognition, ships on PyPI) | arcface:PATH | moco:PATH",
    )
    parser.add_argument("--describer", help="override the pack's describer spec (must have the same descriptor layout)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--max-pixels``, ``--force``, ``--device``, ``--seed`` and ``--precision``, which every command that
    inverts a folder of images into an output folder takes."""
    add_max_pixels(parser)
    add_force(parser)
    add_device_and_seed(parser)
    add_precision(parser)


def pipeline_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``load_pipeline`` keyword arguments the inverting commands share (also sent to Ray workers)."""
    return {
        "pack": args.pack,
        "device": args.device,
        "perceptual": args.perceptual,
        "identity": args.identity,
        "describer": args.describer,
        "precision": getattr(args, "precision", "fp32"),
    }


def attribute_list(text: str) -> tuple[str, ...]:
    """``--attributes A,B,...``: a non-empty comma-separated list of attribute names, without repeats."""
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected attribute names separated by commas, got {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"an attribute is named twice in {text!r}")
    return names


def add_attributes_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--attributes",
        type=attribute_list,
        metavar="A,B,...",
        help="restrict the MAGEC loss to these attributes of the pack (default: all); recorded in the outputs",
    )


#: Where the embedded default's pack lives (``magec.prepare.embedded_pack``), as ``--pack``'s help names it.
EMBEDDED_PACK_HELP = "$MAGEC_CACHE/embedded-pack, default ~/.cache/magec/embedded-pack"


def add_pack(parser: argparse.ArgumentParser) -> None:
    """``--pack``, optional: without it the embedded default's pack is used (prepared once, then cached)."""
    parser.add_argument(
        "--pack",
        metavar="PACK",
        help="pack folder written by `magec prepare` (default: the embedded default's pack, "
        f"{EMBEDDED_PACK_HELP}; prepared on first use with its encoder, a few minutes on 2 CPU cores, then cached; "
        "`magec demo` and `magec studio` use the same)",
    )


def resolve_pack(args: argparse.Namespace) -> None:
    """Set ``args.pack`` to the embedded default's pack when no ``--pack`` was given, saying so in one line (and
    preparing the pack first if the cache does not hold a usable one). Call it after the inputs were checked."""
    if args.pack is not None:
        return
    import sys

    from magec.prepare import EMBEDDED_PACK, embedded_pack
    from magec.weights import magec_cache_dir

    folder = magec_cache_dir() / EMBEDDED_PACK
    made = "" if (folder / "manifest.json").is_file() else " (preparing it now, once: a few minutes on 2 CPU cores)"
    print(f"magec: no --pack given: using the embedded default's pack {folder}{made}", file=sys.stderr)
    embedded_pack(device=getattr(args, "device", "auto"), progress=bool(made))
    args.pack = str(folder)
