"""``magec demo``: prepare the embedded pack, invert the astronaut and generated faces with all three
methods, edit them, and write ``magec-demo/index.html``."""

from __future__ import annotations

import argparse

from magec.cli.cmd_prepare import DEFAULT_SAMPLES, MIN_SAMPLES
from magec.cli.options import add_device_and_seed, add_force, int_at_least, positive_float


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the main job on the embedded default, written to magec-demo/index.html", description=__doc__
    )
    p.add_argument("--out", default="magec-demo")
    p.add_argument(
        "--cache",
        help="where the prepared pack is kept between runs (default: $MAGEC_CACHE or ~/.cache/magec, the one cache "
        "that the Python API, magec studio, invert and edit use too)",
    )
    p.add_argument(
        "--generated", type=int_at_least(0, 64), default=3, help="held-out generated faces to invert (default 3)"
    )
    p.add_argument(
        "--samples", type=int_at_least(MIN_SAMPLES), default=DEFAULT_SAMPLES, help="pack size if it must be prepared"
    )
    p.add_argument(
        "--steps-scale",
        type=positive_float,
        default=1.0,
        help="shorten every method's schedule (default 1: the paper's)",
    )
    p.add_argument("--perceptual", default="auto")
    p.add_argument(
        "--no-encoder", action="store_true", help="when the pack must be prepared, do not train its encoder with it"
    )
    add_force(p)
    add_device_and_seed(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from magec.demo import DemoConfig, run_demo
    from magec.prepare import PrepareConfig

    config = DemoConfig(
        out=Path(args.out),
        cache=Path(args.cache) if args.cache else None,
        generated=args.generated,
        seed=args.seed,
        steps_scale=args.steps_scale,
        device=args.device,
        perceptual=args.perceptual,
        prepare=PrepareConfig(n_samples=args.samples),
        encoder=not args.no_encoder,
        force=args.force,
    )
    index = run_demo(config)
    print(f"wrote {index}")
    return 0
