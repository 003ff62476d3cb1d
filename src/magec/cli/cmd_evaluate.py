"""``magec evaluate``: the paper's Tables 1-3 (reconstruction, realism / improved target, ECS) for a pack."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magec.cli.magec_editor import add_magec_editor, check_magec_editor
from magec.cli.options import (
    add_attributes_option,
    add_pipeline_options,
    add_run_options,
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

if TYPE_CHECKING:
    from magec.distributed import WorkerOptions
    from magec.evaluation.config import EvaluationConfig
    from magec.evaluation.sources import SourceSpec


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
    _add_inputs(p)
    _add_measures(p)
    add_pipeline_options(p)
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
    add_run_options(p)
    add_worker_options(p)
    p.set_defaults(func=run)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    """The pack, the evaluated images (a folder, its faces, or generator samples) and the realism reference."""
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
        "--paste-back",
        action="store_true",
        help="with --face-crop/--align: also paste each projection and edit back into its photo (sharp and "
        "composite) and measure sharpness, closeness to the photo and dlib identity there (paste.csv)",
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


def _add_measures(p: argparse.ArgumentParser) -> None:
    """What the run measures: methods, editors and edits, the scores, the inversion schedules."""
    p.add_argument(
        "--no-identity",
        action="store_true",
        help="skip dlib's identity distance (input -> projection and -> every edit; on by default)",
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


def run(args: argparse.Namespace) -> int:
    from magec.errors import MagecError, file_error
    from magec.evaluation.report import check_report_path, write_report
    from magec.evaluation.run_folder import check_run_folder
    from magec.evaluation.runner import run_evaluation

    check_magec_editor(args.magec_editor, args.pack)
    workers = worker_options(args)
    config = _config(args)
    check_pack_attributes(args.pack, args.attributes)
    report = args.report or args.out / "report.md"
    # The run's own folders are never its inputs, wherever they are (the listing is recursive).
    spec = _source_spec(args, exclude=(str(args.out), str(report.with_suffix(""))))
    if args.paste_back and spec.framing is None:
        raise MagecError("--paste-back needs faces cut from photos: --images with --face-crop or --align")
    if args.notes is not None and not args.notes.is_file():
        raise file_error(args.notes, "no such notes file")
    encoder, encoder_meta = _check_encoder_option(args, workers is not None)
    check_run_folder(args.out, args.force)
    report = check_report_path(report, args.force, run_dir=args.out)
    _check_images(args, spec)
    pipeline = _load_pipeline(args, encoder)
    source = spec.build(pipeline.generator, args.seed)
    reference = None
    if args.reference:
        from magec.evaluation.sources import folder_source

        res = pipeline.generator.resolution
        reference = folder_source(args.reference, res, max_pixels=args.max_pixels, exclude=spec.exclude)
    failures: dict[str, str] = {}
    paths = run_evaluation(
        pipeline,
        source,
        args.out,
        config,
        reference=reference,
        progress=not args.no_progress,
        extra_metadata={"pack": str(args.pack), **encoder_meta},
        executor=_executor(args, workers, config, spec, list(source.ids), failures),
    )
    report = write_report(paths.root, report, command=_command(), notes=args.notes)
    print(f"report: {report} (+ {report.with_suffix('.html').name}); raw CSVs in {paths.root}")
    if failures:
        for image, reason in sorted(failures.items()):
            print(f"magec: failed {image}: {reason}", file=sys.stderr)
        raise MagecError(
            f"{len(failures)} image evaluations failed (listed above; the report leaves them out); "
            "rerun the same command to retry only those"
        )
    return 0


def _config(args: argparse.Namespace) -> EvaluationConfig:
    from magec.evaluation.config import EvaluationConfig
    from magec.evaluation.edit_plans import EditPlanConfig

    return EvaluationConfig(
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
        paste_back=args.paste_back,
        attributes=args.attributes,
        magec_editor=args.magec_editor,
    )


def _source_spec(args: argparse.Namespace, exclude: tuple[str, ...]) -> SourceSpec:
    """The evaluated images as the driver and every worker list them (one-line error for --face-crop without
    --images)."""
    from magec.evaluation.sources import SourceSpec

    return SourceSpec(
        folder=args.images,
        generated=args.generated,
        limit=args.limit,
        max_pixels=args.max_pixels,
        exclude=exclude,
        framing="face-crop" if args.face_crop else "align" if args.align else None,
        max_faces=args.max_faces,
    )


def _check_images(args: argparse.Namespace, spec: SourceSpec) -> None:
    """Every input image is decoded once before any model loads: a bad file stops the run now, not hours in."""
    from magec.evaluation.sources import image_files
    from magec.io.images import read_image

    for folder, limit in ((args.images, args.limit), (args.reference, None)):
        if folder is not None:
            for path in image_files(folder, limit, spec.exclude):
                read_image(path, args.max_pixels, reduce_to=1024)


def _load_pipeline(args: argparse.Namespace, encoder: str | None) -> Any:
    """The pack's pipeline (with ``--encoder FILE`` attached), checked to hold a batch of ``--batch-size``."""
    from magec.memory import check_inversion_batch
    from magec.pipeline import load_pipeline

    pipeline = load_pipeline(**pipeline_options(args))
    if encoder is not None:
        from magec.inversion.starts import attach_encoder

        pipeline = attach_encoder(pipeline, encoder)
    check_inversion_batch(pipeline.generator, args.batch_size, pipeline.device)  # before any image is inverted
    return pipeline


def _executor(
    args: argparse.Namespace,
    workers: WorkerOptions | None,
    config: EvaluationConfig,
    spec: SourceSpec,
    ids: list[str],
    failures: dict[str, str],
) -> Any:
    """None (this process evaluates every chunk), or the workers' executor; the driver keeps the run's files
    (run.json, reference features, CSVs, report)."""
    if workers is None:
        return None
    from magec.distributed.runs import evaluation_executor

    return evaluation_executor(workers, pipeline_options(args), args.out, config, spec, ids, failures)


def _command() -> str | None:
    """The command line that regenerates the report, as the user typed it (None when not run as ``magec``)."""
    if len(sys.argv) > 2 and sys.argv[1] == "evaluate":
        return "magec evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    return None


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
