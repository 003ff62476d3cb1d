"""``magec study``: the paper's blind user study (Fig. 5). ``prepare`` fills a study database with a pool
of edits (every method's edit of the same photo and named operation), which ``magec studio --study-db``
shows to judges; ``report`` gives the preference rate per method pair with a two-sided binomial test."""

from __future__ import annotations

import argparse

from magec.cli.options import add_device_and_seed, add_max_pixels, int_at_least, positive_float

REPORT_MARK = "<!-- magec study report -->"
#: ``--size``: (generated faces, steps scale). quick: 3 photos (the astronaut and 2 generated faces) on
#: schedules shortened 10x; full: the paper's schedules on 8 photos.
SIZES = {"quick": (2, 0.1), "full": (7, 1.0)}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="user study: prepare a pool of edits, report the judgements", description=__doc__)
    study = p.add_subparsers(dest="study_command", required=True, metavar="ACTION")

    prep = study.add_parser(
        "prepare",
        help="invert photos with every method and store random edits of each",
        description="Invert photos with every method and store random named edits of each, photo by photo: "
        "each photo is committed as soon as it is done, and rerunning the same command on the same --db "
        "continues with the photos not yet in the pool. --size quick took 38 s on 2 CPU cores with the "
        "embedded default once its pack was prepared (the first run prepares it: about 10 minutes, once); "
        "--size full (the paper's schedules on 8 photos) about 10x as long per photo.",
    )
    prep.add_argument("--db", help="study database to create (default: study.sqlite in the magec cache)")
    prep.add_argument("--pack", help="pack folder (default: the embedded default)")
    prep.add_argument("--generator", help="generator override (default: the pack's)")
    prep.add_argument("photos", nargs="*", help="photos to include (their face is framed for the generator)")
    prep.add_argument(
        "--astronaut", action=argparse.BooleanOptionalAction, default=True, help="include scikit-image's astronaut"
    )
    prep.add_argument(
        "--size",
        choices=tuple(SIZES),
        default="full",
        help="quick: 2 generated faces, schedules shortened 10x (38 s on 2 CPU cores); "
        "full: 7 generated faces, the paper's schedules (default)",
    )
    prep.add_argument(
        "--generated", type=int_at_least(0, 256), help="generated faces the pack never saw (default: from --size)"
    )
    prep.add_argument("--edits", type=int_at_least(1, 64), default=3, help="random edits per photo (default 3)")
    prep.add_argument(
        "--steps-scale", type=positive_float, help="shorten every method's schedule (default: from --size)"
    )
    prep.add_argument(
        "--components",
        action="store_true",
        help="also draw edits from unnamed components (GANSpace, SeFa); by default only named attributes",
    )
    prep.add_argument("--perceptual", default="auto")
    add_max_pixels(prep)
    add_device_and_seed(prep)
    prep.set_defaults(func=run_prepare)

    rep = study.add_parser("report", help="preference rates per method pair, binomial tests, judges, judgements")
    rep.add_argument("--db", required=True, help="study database")
    rep.add_argument("--out", help="also write the report as Markdown here")
    rep.add_argument("--csv", help="export every judgement as a CSV file here")
    rep.add_argument("--force", action="store_true", help="replace --out/--csv even if magec did not write them")
    rep.set_defaults(func=run_report)


def size_settings(args: argparse.Namespace) -> tuple[int, float]:
    """(generated faces, steps scale): those of ``--size``, where ``--generated`` / ``--steps-scale`` are not given."""
    generated, steps_scale = SIZES[args.size]
    return (
        generated if args.generated is None else args.generated,
        steps_scale if args.steps_scale is None else args.steps_scale,
    )


def run_prepare(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from magec.errors import file_error
    from magec.faces.detection import DETECTION_SIDE
    from magec.io.images import read_image
    from magec.studio.study import StudyDB, study_db_path

    db_path = study_db_path(args.db)
    # Inputs first: a refused photo leaves no database behind.
    photos = [(Path(p).name, read_image(p, args.max_pixels, reduce_to=DETECTION_SIDE)) for p in args.photos]
    generated, steps_scale = size_settings(args)
    db = StudyDB(db_path, create=True)  # an existing pool is checked against these settings before any work

    import torch

    from magec.demo import HELDOUT_SEED
    from magec.faces.crop import astronaut_face
    from magec.faces.framing import frame_face, framing_for
    from magec.io.images import pil_to_tensor
    from magec.pipeline import load_pipeline
    from magec.studio.study import pool_photos, prepare_pool

    pipeline = load_pipeline(args.pack, args.device, perceptual=args.perceptual, generator=args.generator)
    gen = pipeline.generator
    framing = framing_for(gen.spec)
    pool = []
    for name, photo in photos:
        try:
            pool.append((name, pil_to_tensor(frame_face(photo, gen.resolution, framing))))
        except Exception as exc:
            raise file_error(name, str(exc)) from None
    if args.astronaut and framing == "face-crop":
        pool.append(("astronaut", pil_to_tensor(astronaut_face(gen.resolution))))
    if generated:
        with torch.no_grad():
            faces = gen.synthesize(gen.sample_latents(generated, HELDOUT_SEED + 1000 + args.seed)).cpu()
        pool.extend((f"generated-{k}", faces[k : k + 1]) for k in range(generated))
    try:
        added = prepare_pool(pipeline, db, pool, args.edits, steps_scale, args.seed, components=args.components)
    except KeyboardInterrupt:
        kept = pool_photos(db)
        print(
            f"kept {kept} of {len(pool)} photos in {db_path}; run the same command again to continue",
            file=sys.stderr,
        )
        raise
    print(
        f"wrote {added} edits ({db.pool_size()} in the pool, {len(pool)} photos) to {db_path}; "
        f"serve it with `magec studio --study-db {db_path}`"
    )
    return 0


def _ours(header: str):
    def check(path) -> bool:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.readline().strip() == header
        except (OSError, UnicodeDecodeError):
            return False

    return check


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from magec.io.atomic import write_text
    from magec.io.output_folder import check_output_file
    from magec.studio.study import CSV_COLUMNS, StudyDB, report_markdown, rows_csv, study_report

    for target, header in ((args.out, REPORT_MARK), (args.csv, ",".join(CSV_COLUMNS))):
        if target:
            check_output_file(target, args.force, ours=_ours(header))
    db = StudyDB(args.db)
    report = study_report(db)
    text = report_markdown(report, Path(args.db).name)
    print(text, end="")
    if args.out:
        write_text(args.out, f"{REPORT_MARK}\n{text}")
        print(f"wrote {args.out}")
    if args.csv:
        write_text(args.csv, rows_csv(db.rows()))
        print(f"wrote {report['judgements']} judgements to {args.csv}")
    return 0
