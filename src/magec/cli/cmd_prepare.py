"""``magec prepare``: sample, describe and fit a pack."""

from __future__ import annotations

import argparse

from magec.cli.options import add_device_and_seed, add_force, int_at_least, positive_int
from magec.describers import EMBEDDED_DESCRIBER
from magec.generators import EMBEDDED_GENERATOR

#: PrepareConfig's defaults, repeated so that ``--help`` needs no torch; a test keeps them equal.
DEFAULT_SAMPLES = 8000
DEFAULT_BATCH = None  # auto: sized from the memory budget (magec.memory)
MIN_SAMPLES = 50
DEFAULT_SLIDER_SAMPLES = 12  # ReachConfig.samples


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="fit LinkNet, editors and latent statistics into a pack", description=__doc__)
    p.add_argument("--out", required=True, help="pack folder to write: new, empty, or an existing pack (replaced)")
    p.add_argument("--generator", default=EMBEDDED_GENERATOR, help="dcgan-face (default) or stylegan2:PATH")
    p.add_argument(
        "--describer",
        default=EMBEDDED_DESCRIBER,
        help="faces (default; faces-dlib without face-api), dlib-age-gender, celeba:PATH, onnx:MODEL.onnx:LAYOUT.json",
    )
    p.add_argument(
        "--samples",
        type=int_at_least(MIN_SAMPLES),
        default=DEFAULT_SAMPLES,
        help=f"latent-image pairs to sample (default {DEFAULT_SAMPLES}, at least {MIN_SAMPLES})",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH,
        help="images synthesised and described at once (default: auto, from the resolution and free memory; "
        "results agree up to float rounding)",
    )
    p.add_argument("--no-styleflow", action="store_true", help="skip fitting the StyleFlow editor (about 25 s on CPU)")
    p.add_argument(
        "--slider-samples",
        type=int_at_least(0),
        default=DEFAULT_SLIDER_SAMPLES,
        help=f"samples on which each slider's range is measured (default {DEFAULT_SLIDER_SAMPLES}; each costs about "
        "120 syntheses; 0 skips the measurement and the studio falls back to the editors' default ranges)",
    )
    p.add_argument(
        "--no-encoder",
        action="store_true",
        help="do not train magec's encoder into the pack (encoder.safetensors + encoder.report.json; "
        "`magec train-encoder` trains one later)",
    )
    p.add_argument(
        "--fixed-box-labels",
        action="store_true",
        help="label samples on the describer's fixed chip box only (default: dlib-aligned chips where dlib finds one)",
    )
    add_force(p)
    add_device_and_seed(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kind, _, describer_arg = args.describer.partition(":")
    if kind == "onnx":  # a hostile model or layout file is refused in a fraction of a second, before torch loads
        from magec.describers.onnx_files import check_onnx_spec

        check_onnx_spec(describer_arg)

    import json
    from dataclasses import replace

    from magec.describers import load_describer
    from magec.encoders.files import report_path
    from magec.encoders.names import PACK_ENCODER
    from magec.encoders.training import EncoderTrainingConfig
    from magec.generators import load_generator
    from magec.latent.reach import ReachConfig
    from magec.pack import check_pack_folder
    from magec.prepare import PrepareConfig, prepare_pack

    config = PrepareConfig(
        n_samples=args.samples, seed=args.seed, batch_size=args.batch_size, aligned_labels=not args.fixed_box_labels
    )
    if args.no_styleflow:
        config = replace(config, styleflow=None)
    if args.slider_samples != DEFAULT_SLIDER_SAMPLES:
        config = replace(config, sliders=ReachConfig(samples=args.slider_samples) if args.slider_samples else None)
    encoder = None if args.no_encoder else EncoderTrainingConfig(seed=args.seed)
    names = () if args.no_encoder else (PACK_ENCODER, report_path(PACK_ENCODER).name)
    check_pack_folder(args.out, args.force, extra=names)  # before minutes of work
    describer = load_describer(args.describer, args.device)  # a bad describer file fails before the generator loads
    generator = load_generator(args.generator, args.device)
    pack = prepare_pack(generator, describer, config, encoder=encoder)
    pack.save(args.out, force=args.force)
    print(f"wrote pack {args.out} in {pack.info['prepare']['seconds']} s")
    labels = pack.info["labels"]
    aligned, fixed = labels.get("aligned", 0), labels["fixed_box"]
    print(f"describer {pack.describer_spec}; labels: {aligned} aligned, {fixed} fixed box")
    print("LinkNet held-out agreement with F: " + json.dumps(pack.info["linknet"]["heldout_report"]))
    if "encoder" in pack.info:
        report = pack.info["encoder"]
        print(f"encoder ({PACK_ENCODER}) held-out report: " + json.dumps({k: report[k] for k in ("encoder", "mean")}))
    return 0
