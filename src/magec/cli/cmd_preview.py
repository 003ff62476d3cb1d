"""``magec preview``: PNGs of a pack: generated faces with F's predictions, and one strip per editor."""

from __future__ import annotations

import argparse

from magec.cli.options import add_device_and_seed, add_force, int_at_least


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preview", help="write PNGs of generated faces with F's predictions and editor strips", description=__doc__
    )
    p.add_argument("--pack", required=True)
    p.add_argument("--out", required=True, help="folder for samples.png and edits-<editor>.png")
    p.add_argument(
        "-n", type=int_at_least(1, 1024), default=24, help="generated faces in samples.png (default 24, at most 1024)"
    )
    p.add_argument(
        "--entanglement",
        action="store_true",
        help="also measure what each editor direction moves besides its target: entanglement.{csv,md,png}",
    )
    p.add_argument(
        "--entanglement-samples",
        type=int_at_least(2, 100_000),
        default=200,
        metavar="N",
        help="seeded samples for --entanglement (default 200)",
    )
    add_force(p)
    add_device_and_seed(p, seed=1234)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magec.io.output_folder import OutputFolder

    out = OutputFolder.open(args.out, "preview", args.force)
    from magec.pipeline import load_pipeline
    from magec.preview import preview_files, write_preview

    pipeline = load_pipeline(args.pack, args.device, perceptual="describer-features")
    names = preview_files(pipeline)
    if args.entanglement:
        names += ["entanglement.csv", "entanglement.md", "entanglement.png"]
    with out.releasing():  # an early end withdraws the claims it did not write
        out.claim({name: "" for name in names})
        for path in write_preview(pipeline, out.path, n=args.n, seed=args.seed):
            print(f"wrote {path}")
        if args.entanglement:
            from magec.entanglement import entanglement, write_entanglement

            table = entanglement(pipeline, n=args.entanglement_samples, seed=args.seed)
            for path in write_entanglement(table, out.path):
                print(f"wrote {path}")
    return 0
