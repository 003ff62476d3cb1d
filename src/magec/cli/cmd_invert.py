"""``magec invert``: project images into the generator's latent space (magec | no-magec | im2stylegan++, or
magec+pti | no-magec+pti: followed by pivotal tuning of the generator around the latent; or from an encoder's
code: encoder (the code alone, one forward pass) | encoder+magec (MAGEC refining it, a quarter of the steps) |
encoder+magec+pti)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from magec.cli.magec_editor import add_magec_editor, check_magec_editor
from magec.cli.options import (
    add_attributes_option,
    add_device_and_seed,
    add_force,
    add_max_pixels,
    add_pack,
    add_precision,
    check_pack_attributes,
    non_negative_float,
    non_negative_int,
    pipeline_options,
    positive_float,
    positive_int,
    resolve_pack,
)
from magec.cli.workers import add_worker_options, worker_options
from magec.errors import MagecError
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
    p.add_argument("--perceptual", default="auto", help="auto | lpips-vgg[:PATH] | describer-features")
    p.add_argument(
        "--identity",
        default="auto",
        help="auto (default: dlib for the embedded face generator, else none) | none | dlib (dlib's face "
        "recognition, ships on PyPI) | arcface:PATH | moco:PATH",
    )
    p.add_argument("--describer", help="override the pack's describer spec (must have the same descriptor layout)")
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
    from magec.inversion.config import PTI_METHODS, method_config
    from magec.inversion.folder import (
        FolderJob,
        FramingOptions,
        Item,
        collect_inputs,
        deal_batches,
        one_line,
        output_claims,
        pack_fingerprint,
        pending_batches,
        request_of,
    )
    from magec.inversion.starts import check_init, init_fingerprint
    from magec.io.images import read_image
    from magec.io.output_folder import OutputFolder, check_not_inputs, unique_output_names

    workers = worker_options(args)
    inputs = collect_inputs(args.images, exclude=Path(args.out))
    if inputs.not_images:
        shown = ", ".join(str(p) for p in inputs.not_images[:3])
        more = f" and {len(inputs.not_images) - 3} more" if len(inputs.not_images) > 3 else ""
        _say(f"skipped {len(inputs.not_images)} files that are not images (by suffix): {shown}{more}")
    paths = inputs.files
    names = unique_output_names(paths)
    if args.pack is not None:  # checked before anything else; the embedded pack is resolved after the inputs
        check_magec_editor(args.magec_editor, args.pack)
        check_pack_attributes(args.pack, args.attributes)
    config = method_config(
        args.method,
        args.steps_scale,
        lambda_magec=args.lambda_magec,
        lambda_id=args.lambda_id,
        magec_editor=args.magec_editor,
    )
    if args.attributes:
        from dataclasses import replace

        config = replace(config, attributes=args.attributes)
    init = check_init(args.init, args.method, args.pack)  # before any model loads
    if init != "mean" and config.start != "encoder":  # a paper method started from an encoder's code
        from dataclasses import replace

        config = replace(config, start="encoder")
    out = OutputFolder.open(args.out, "inversion", args.force)
    items = [Item(name, str(path)) for name, path in zip(names, paths)]
    claims = {k: v for item in items for k, v in output_claims(item, args.method).items()}
    out.check_claims(claims)
    check_not_inputs([out.target(c) for c in claims], paths)
    failed: dict[str, str] = {}  # input path -> reason
    readable = []
    for item in items:  # every input is decoded once (and a named one refused) before any model loads
        try:
            read_image(item.path, args.max_pixels, reduce_to=1024)
        except MagecError as exc:
            if Path(item.path) in inputs.explicit:
                raise
            failed[item.path] = one_line(exc)
            _say(f"skipped {one_line(exc)}")
        else:
            readable.append(item)
    if not readable:
        raise MagecError(f"none of the {len(items)} images could be read (listed above)")
    if args.pack is None:
        resolve_pack(args)
        check_magec_editor(args.magec_editor, args.pack)
        check_pack_attributes(args.pack, args.attributes)

    framing = FramingOptions(args.align, args.face_crop, args.face, args.max_pixels)
    request = request_of(
        method=args.method,
        steps_scale=args.steps_scale,
        lambda_magec=args.lambda_magec,
        lambda_id=args.lambda_id,
        **({"attributes": list(args.attributes)} if args.attributes else {}),  # absent: older runs stay resumable
        **({"magec_editor": args.magec_editor} if args.magec_editor != "interfacegan" else {}),
        **({"precision": args.precision} if args.precision != "fp32" else {}),
        # the start, where it is not the paper's mean (absent: runs made before --init stay resumable)
        **({"init": init} if init != "mean" else {}),
        **({"init_sha256": digest} if (digest := init_fingerprint(init)) else {}),
        pack=str(Path(args.pack).resolve()),
        pack_manifest=pack_fingerprint(args.pack),
        perceptual=args.perceptual,
        identity=args.identity,
        describer=args.describer,
        seed=args.seed,
        batch_size=args.batch_size,
        align=args.align,
        face_crop=args.face_crop,
        face=args.face if (args.align or args.face_crop) else None,
    )
    from magec.inversion.pti import PTIConfig  # torch loads here, after every input was read

    job = FolderJob(
        str(out.path),
        args.method,
        config,
        args.seed,
        framing,
        request,
        {
            "pack": str(args.pack),
            "seed": args.seed,
            "steps_scale": args.steps_scale,
            "magec_editor": args.magec_editor,
            "init": init,
        },
        pti=PTIConfig().scaled(args.steps_scale) if args.method in PTI_METHODS else None,
        init=init,
    )
    batches = deal_batches(readable, args.batch_size)  # over every readable image: resumed runs keep them
    todo = pending_batches(batches, out.path, out.files, request)
    by_name = {item.name: item for item in items}
    finished = len(readable) - sum(len(write) for _, write in todo)
    if finished:
        _say(f"{finished} of {len(readable)} images already inverted with these settings: skipped")
    pipeline_args = pipeline_options(args)
    wrote = 0

    def report(batch: Any, outcome: Any) -> None:
        nonlocal wrote
        for name, reason in outcome.failed.items():
            path = by_name[name].path
            failed[path] = reason
            _say(f"failed {reason if reason.startswith(path) else f'{path}: {reason}'}")
        wrote += len(outcome.done)

    with out.releasing():  # an early end (error, Ctrl-C, SIGTERM) withdraws the claims it did not write
        if todo and workers is None:
            _invert_here(args, pipeline_args, job, todo, inputs.explicit, out, report)
        elif todo:
            from tqdm import tqdm

            from magec.distributed.runs import invert_on_workers

            total = sum(len(write) for _, write in todo)
            bar = tqdm(total=total, desc=f"invert [{args.method}]", unit="image", delay=0.5)

            def start(pool: Any) -> None:  # the workers are up: claim the outputs, then they write them
                out.claim(
                    {
                        k: v
                        for batch, write in todo
                        for n in write
                        for k, v in output_claims(by_name[n], args.method).items()
                    }
                )
                bar.set_postfix_str(f"{len(pool.actors)} workers")

            def report_and_count(batch: Any, outcome: Any) -> None:
                report(batch, outcome)
                bar.update(len(outcome.done) + len(outcome.failed))

            try:
                invert_on_workers(workers, pipeline_args, job, todo, report_and_count, on_start=start)
            finally:
                bar.close()
        print(f"inverted {wrote} images into {out.path} ({finished} already done, {len(failed)} failed)")
        if failed:
            raise MagecError(
                f"{len(failed)} of {len(items)} images failed (listed above); the others are written, "
                "and a rerun of the same command retries only what is missing"
            )
    return 0


def _invert_here(args, pipeline_args, job, todo, explicit, out, report) -> None:
    """The plain single-process run: named images are framed (and refused) before anything is written."""
    from magec.inversion import ProgressBar
    from magec.inversion.folder import invert_batch, output_claims, read_framed
    from magec.inversion.starts import attach_encoder, needs_start_encoder
    from magec.pipeline import load_pipeline

    pipeline = attach_encoder(load_pipeline(**pipeline_args), job.init)
    if needs_start_encoder(job):  # the pack's encoder, or the one --init named: checked before any inversion
        from magec.inversion.optimizer import require_encoder

        require_encoder(pipeline, job.method)
    size = pipeline.generator.resolution
    from magec.memory import check_inversion_batch

    check_inversion_batch(pipeline.generator, max(len(batch) for batch, _ in todo), pipeline.device)
    framed = {
        item.name: read_framed(item.path, size, job.framing)
        for batch, _ in todo
        for item in batch
        if Path(item.path) in explicit
    }
    writes = [item for batch, write in todo for item in batch if item.name in write]
    out.claim({k: v for item in writes for k, v in output_claims(item, args.method).items()})
    done = 0
    total = sum(len(write) for _, write in todo)
    for batch, write in todo:
        bar = ProgressBar(f"invert [{args.method}] {done + len(write)}/{total}")
        try:
            outcome = invert_batch(pipeline, job, batch, write, callback=bar, images=framed)
        finally:
            bar.close()  # also when interrupted: the last line is then magec's own
        for name in outcome.done:
            print(f"wrote {out.path / name}.{{latent.safetensors,png,json}}")
        report((batch, write), outcome)
        done += len(write)
