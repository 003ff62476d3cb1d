"""``magec evaluate``: the paper's Tables 1-3 (reconstruction, realism / improved target, ECS) for a pack."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from magec.cli.magec_editor import add_magec_editor, check_magec_editor
from magec.cli.options import (
    add_attributes_option,
    add_device_and_seed,
    add_force,
    add_max_pixels,
    add_precision,
    check_pack_attributes,
    int_at_least,
    non_negative_float,
    non_negative_int,
    pipeline_options,
    positive_float,
    positive_int,
)
from magec.cli.workers import add_worker_options, worker_options
from magec.inversion.config import METHODS, PAPER_METHODS
from magec.latent.kinds import EDITORS, editor_kinds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="compare inversion methods: reconstruction, realism, improved target, edit consistency (resumable)",
        description=(
            "Invert images with each method, apply the same seeded random edits to every projection, and "
            "measure the paper's Tables 1-3. Killed runs resume where they stopped when re-run with the same "
            "arguments. Writes per-image CSVs to --out and a markdown + HTML report."
        ),
    )
    p.add_argument("--pack", required=True, help="pack folder (from `magec prepare`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of images to invert (and its sub-folders; sorted by path)")
    src.add_argument(
        "--generated",
        type=int_at_least(1, 100_000),
        metavar="N",
        help="invert N fresh generator samples the pack never saw",
    )
    p.add_argument("--limit", type=positive_int, default=None, help="use only the first N images of --images")
    framing = p.add_mutually_exclusive_group()
    framing.add_argument(
        "--face-crop",
        action="store_true",
        help="with --images: evaluate every face dlib finds in each photo, framed as `magec invert --face-crop` "
        "frames it (the embedded DCGAN's chip box)",
    )
    framing.add_argument(
        "--align",
        action="store_true",
        help="with --images: every face, FFHQ-aligned as `magec invert --align` (StyleGAN2 FFHQ generators)",
    )
    p.add_argument(
        "--max-faces", type=positive_int, default=None, help="with --face-crop/--align: at most N faces in all"
    )
    p.add_argument(
        "--no-identity",
        action="store_true",
        help="skip dlib's identity distance (input -> projection and -> every edit; on by default)",
    )
    p.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="folder of real images for the realism score (default: generator samples)",
    )
    p.add_argument(
        "--reference-size",
        type=int_at_least(4, 1_000_000),
        default=1000,
        help="generator samples in the realism reference set without --reference (default 1000)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(PAPER_METHODS),
        help="inversion methods (first = reference of the comparisons; default: the paper's three); "
        "magec+pti / no-magec+pti tune one generator per image, which renders its edits and ECS cycles; "
        "encoder / encoder+magec / encoder+magec+pti start from an encoder's code (--encoder)",
    )
    p.add_argument(
        "--encoder",
        metavar="encoder|ENC.safetensors|e4e:PATH",
        default=None,
        help="the encoder the encoder methods start from: the pack's own (default, `encoder`), a magec encoder "
        "file (`magec train-encoder`) or e4e:PATH / psp:PATH; recorded in the run",
    )
    p.add_argument(
        "--editors",
        nargs="+",
        choices=EDITORS,
        default=None,
        help=f"editors for the random edits and ECS (default: {' '.join(editor_kinds(paper=True))}, plus "
        f"{' and '.join(editor_kinds(paper=False))} when the pack has them)",
    )
    p.add_argument(
        "--edits-per-editor",
        type=non_negative_int,
        default=7,
        help="random edits per image and editor (default 7: ~20 per image as the paper)",
    )
    p.add_argument(
        "--no-ecs", action="store_true", help="skip the edit-consistency score (it re-projects every ECS edit)"
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=1, help="images inverted together (keep it fixed when resuming)"
    )
    p.add_argument(
        "--steps-scale",
        type=positive_float,
        default=1.0,
        help="scale every inversion schedule's steps (1 = the paper's)",
    )
    p.add_argument(
        "--perceptual",
        default="auto",
        help="perceptual loss / LPIPS network: auto, lpips-vgg[:PATH], describer-features",
    )
    add_attributes_option(p)
    p.add_argument(
        "--lambda-magec",
        type=non_negative_float,
        help="replace lambda_MAGEC (paper: 3e-4) in the magec method, for sensitivity studies",
    )
    add_magec_editor(
        p,
        "editor whose edits the magec method's MAGEC term uses: interfacegan (the paper) or styleflow",
    )
    p.add_argument(
        "--identity",
        default="auto",
        help="identity loss for the inversions: auto (default: dlib for the embedded face generator, else none) "
        "| none | dlib | arcface:PATH | moco:PATH",
    )
    p.add_argument("--describer", help="override the pack's describer spec (same descriptor layout)")
    p.add_argument(
        "--out", required=True, type=Path, help="run folder: CSVs, per-image records, images (resumed if it exists)"
    )
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        help="report path (.md; .html and a folder of the same stem beside it); default OUT/report.md",
    )
    p.add_argument("--notes", type=Path, default=None, help="markdown file included as the report's discussion")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_max_pixels(p)
    add_force(p)
    add_device_and_seed(p)
    add_precision(p)
    add_worker_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magec.errors import MagecError, file_error
    from magec.evaluation.edit_plans import EditPlanConfig
    from magec.evaluation.report import check_report_path, write_report
    from magec.evaluation.runner import EvaluationConfig, check_run_folder, run_evaluation
    from magec.evaluation.sources import image_files
    from magec.io.images import read_image

    check_magec_editor(args.magec_editor, args.pack)
    workers = worker_options(args)
    config = EvaluationConfig(
        methods=tuple(args.methods),
        editors=tuple(args.editors) if args.editors else None,
        plan=EditPlanConfig(edits_per_editor=args.edits_per_editor),
        ecs=not args.no_ecs,
        reference_size=args.reference_size,
        batch_size=args.batch_size,
        seed=args.seed,
        steps_scale=args.steps_scale,
        lambda_magec=args.lambda_magec,
        identity=not args.no_identity,
        attributes=args.attributes,
        magec_editor=args.magec_editor,
    )
    check_pack_attributes(args.pack, args.attributes)
    faces = "face-crop" if args.face_crop else "align" if args.align else None
    if faces is not None and args.images is None:
        raise MagecError("--face-crop/--align need --images (a folder of photos)")
    if faces is not None and workers is not None:
        raise MagecError("--face-crop/--align with --workers/--ray: not supported yet; run without workers")
    if args.notes is not None and not args.notes.is_file():
        raise file_error(args.notes, "no such notes file")
    encoder, encoder_meta = _check_encoder_option(args, workers is not None)
    check_run_folder(args.out, args.force)
    report = check_report_path(args.report or args.out / "report.md", args.force, run_dir=args.out)
    # Every input image is decoded once before any model loads: a bad file stops the run now, not hours in.
    # The run's own folders are never its inputs, wherever they are (the listing is recursive).
    own = [str(args.out), str(report.with_suffix(""))]
    for folder, limit in ((args.images, args.limit), (args.reference, None)):
        if folder is not None:
            for path in image_files(folder, limit, own):
                read_image(path, args.max_pixels, reduce_to=1024)

    from magec.evaluation.sources import faces_source, folder_source, generated_source
    from magec.pipeline import load_pipeline

    pipeline = load_pipeline(
        args.pack,
        device=args.device,
        perceptual=args.perceptual,
        identity=args.identity,
        describer=args.describer,
        precision=args.precision,
    )
    if encoder is not None:
        from magec.inversion.starts import attach_encoder

        pipeline = attach_encoder(pipeline, encoder)
    res = pipeline.generator.resolution
    from magec.memory import check_inversion_batch

    check_inversion_batch(pipeline.generator, args.batch_size, pipeline.device)  # before any image is inverted
    if faces is not None:
        source = faces_source(args.images, res, faces, args.limit, args.max_faces, args.max_pixels, own)
    elif args.images:
        source = folder_source(args.images, res, args.limit, args.max_pixels, own)
    else:
        source = generated_source(pipeline.generator, args.generated, args.seed)
    reference = folder_source(args.reference, res, max_pixels=args.max_pixels, exclude=own) if args.reference else None
    failures: dict[str, str] = {}
    executor = None
    if workers is not None:  # the driver keeps the run's files (run.json, reference features, CSVs, report)
        from magec.distributed.runs import evaluation_executor

        pipeline_args = pipeline_options(args)
        spec = {
            "folder": args.images,
            "limit": args.limit,
            "max_pixels": args.max_pixels,
            "generated": args.generated,
            "exclude": own,  # the workers must list the same images, in the same order
        }
        executor = evaluation_executor(workers, pipeline_args, args.out, config, spec, list(source.ids), failures)
    paths = run_evaluation(
        pipeline,
        source,
        args.out,
        config,
        reference=reference,
        progress=not args.no_progress,
        extra_metadata={"pack": str(args.pack), **encoder_meta},
        executor=executor,
    )
    command = (
        "magec evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if len(sys.argv) > 2 and sys.argv[1] == "evaluate"
        else None
    )
    report = write_report(paths.root, report, command=command, notes=args.notes)
    print(f"report: {report} (+ {report.with_suffix('.html').name}); raw CSVs in {paths.root}")
    if failures:
        for image, reason in sorted(failures.items()):
            print(f"magec: failed {image}: {reason}", file=sys.stderr)
        raise MagecError(
            f"{len(failures)} image evaluations failed (listed above; the report leaves them out); "
            "rerun the same command to retry only those"
        )
    return 0


def _check_encoder_option(args: argparse.Namespace, with_workers: bool) -> tuple[str | None, dict[str, str]]:
    """``--encoder`` checked before any model loads: the resolved spec (None: the pack's own, or no encoder
    method) and what the run's metadata records of it (a file's path and SHA-256, so a resume cannot switch)."""
    from magec.errors import MagecError
    from magec.inversion.config import needs_encoder
    from magec.inversion.starts import check_init, init_file, init_fingerprint

    methods = [m for m in args.methods if needs_encoder(m)]
    if not methods:
        if args.encoder is not None:
            raise MagecError("argument --encoder: only the encoder methods use it (--methods encoder, encoder+magec)")
        return None, {}
    if args.encoder is not None and args.encoder.strip() == "mean":
        raise MagecError("argument --encoder: mean is not an encoder; give encoder, ENC.safetensors or e4e:PATH")
    spec = check_init(args.encoder, methods[0], args.pack)
    if init_file(spec) is None:
        return None, {}
    if with_workers:
        raise MagecError("--encoder FILE with --workers/--ray: not supported yet; run without workers")
    return spec, {"encoder_file": spec, "encoder_sha256": init_fingerprint(spec) or ""}
