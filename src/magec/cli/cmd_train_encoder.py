"""``magec train-encoder --pack PACK --out ENC.safetensors``: train magec's encoder from the pack's generator alone
(fresh sampled pairs every batch, no data set); the held-out report is printed and written beside it as
ENC.report.json; OUT.ckpt holds the resumable checkpoint (rerun the same command to continue)."""

from __future__ import annotations

import argparse
import json

from magec.cli.options import add_device_and_seed, add_force, add_pack, int_at_least, non_negative_float, positive_int

#: EncoderTrainingConfig's defaults, repeated so that ``--help`` needs no torch; a test keeps them equal.
DEFAULT_STEPS = 300
DEFAULT_BATCH = 32


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-encoder", help="train magec's image-to-latent encoder for a pack's generator", description=__doc__
    )
    add_pack(p)
    p.add_argument(
        "--out", required=True, help="encoder file to write (.safetensors); ENC.report.json and OUT.ckpt beside it"
    )
    p.add_argument(
        "--steps", type=int_at_least(0), default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help=f"pairs per step (default: as many as the device's memory holds at the generator's resolution, at most "
        f"{DEFAULT_BATCH}; the chosen size is printed)",
    )
    p.add_argument(
        "--lambda-magec",
        type=non_negative_float,
        default=0.0,
        help="weight of the MAGEC term through the pack's LinkNet: LinkNet of the predicted code should agree with "
        "LinkNet of the true one (default 0: off)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_force(p, "--out file (replace a file magec did not write)")
    add_device_and_seed(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from magec.cli.options import resolve_pack
    from magec.encoders.files import is_magec_encoder, report_path
    from magec.encoders.names import PACK_ENCODER
    from magec.io.output_folder import check_output_file
    from magec.pack import MANIFEST, check_pack_folder

    out = Path(args.out)
    check_output_file(out, args.force, ours=is_magec_encoder)  # before any model loads
    check_output_file(report_path(out), args.force, ours=_is_report)
    if out.name == PACK_ENCODER and (out.parent / MANIFEST).is_file():  # the pack's own encoder, in its folder
        check_pack_folder(out.parent, args.force)
    resolve_pack(args)

    from tqdm.auto import tqdm

    from magec.encoders.files import save_encoder
    from magec.encoders.training import EncoderTrainingConfig, checkpoint_batch_size, checkpoint_path, training_batch
    from magec.pipeline import load_pipeline
    from magec.prepare import train_pack_encoder

    perceptual = EncoderTrainingConfig.perceptual
    pipeline = load_pipeline(args.pack, args.device, perceptual, identity="none", with_encoder=False)
    ckpt = checkpoint_path(out)
    resumed = checkpoint_batch_size(ckpt) if args.batch_size is None else None  # a resumed run keeps its batch
    batch = training_batch(pipeline.generator, args.batch_size or resumed)
    how = "--batch-size" if args.batch_size else f"the checkpoint's, {ckpt}" if resumed else f"auto, {batch.budget}"
    print(f"{batch.size} pairs per step ({how})")
    config = EncoderTrainingConfig(
        steps=args.steps, batch_size=batch.size, lambda_magec=args.lambda_magec, seed=args.seed
    )
    bar = tqdm(total=config.steps, desc="train encoder", unit="step", disable=args.quiet)

    def progress(step) -> None:
        bar.update(step.step - bar.n)
        bar.set_postfix(loss=f"{step.loss:.4f}", refresh=False)

    try:
        result = train_pack_encoder(
            pipeline.generator,
            pipeline.describer,
            pipeline.pack,
            pipeline.perceptual,
            config,
            ckpt,
            progress,
        )
    finally:
        bar.close()
    if result.resumed_from:
        print(f"resumed from {ckpt} at step {result.resumed_from}")
    save_encoder(out, result.encoder, pipeline.generator, result.report, result.training)
    _index_in_pack(out, args.force)
    ckpt.unlink(missing_ok=True)  # magec's own checkpoint, finished with
    print(f"wrote {out} ({result.steps} steps, {result.seconds:.1f} s) and {report_path(out)}")
    print("held-out report: " + json.dumps({k: result.report[k] for k in ("encoder", "mean")}))
    return 0


def _index_in_pack(out, force: bool) -> None:
    """Written into a pack folder as its own encoder: list both files in the pack's index (as ``prepare`` does), so
    the folder stays one magec pack."""
    from magec.encoders.files import report_path
    from magec.encoders.names import PACK_ENCODER
    from magec.pack import MANIFEST, index_pack_files

    if out.name == PACK_ENCODER and (out.parent / MANIFEST).is_file():
        index_pack_files(out.parent, (PACK_ENCODER, report_path(PACK_ENCODER).name), force)


def _is_report(path) -> bool:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == "magec-encoder-report"
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False
