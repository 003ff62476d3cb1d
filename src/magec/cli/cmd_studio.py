"""``magec studio``: a local web page to invert and edit your own photo, compare the methods, and run the
paper's blind user study. Serves 127.0.0.1 only unless --host says otherwise; works with no network."""

from __future__ import annotations

import argparse

from magec.cli.options import add_device_and_seed, add_precision, int_at_least, positive_float


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "studio",
        help="web page: upload a photo, invert, edit with sliders; compare methods; user study",
        description=__doc__,
    )
    p.add_argument("--pack", help="pack folder (default: the embedded default, prepared on first use and cached)")
    p.add_argument("--generator", help="generator override (default: the pack's), e.g. stylegan2:PATH")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_at_least(1, 65535), default=7860, help="port (default 7860)")
    p.add_argument(
        "--study-db", help="SQLite file of the user study (default: study.sqlite in the magec cache; see `magec study`)"
    )
    p.add_argument(
        "--steps-scale",
        type=positive_float,
        default=1.0,
        help="shorten every method's schedule (default 1: the paper's)",
    )
    p.add_argument("--perceptual", default="auto", help="auto | lpips-vgg[:PATH] | describer-features")
    add_device_and_seed(p)
    add_precision(p)
    p.set_defaults(func=run)


def check_port_free(host: str, port: int) -> None:
    """Refuse a port that is taken (before minutes of loading), with one line."""
    import socket

    from magec.errors import MagecError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server does
            probe.bind((host, port))
    except OSError as exc:
        raise MagecError(f"--host {host} --port {port}: cannot serve there ({exc.strerror or exc})") from None


def run(args: argparse.Namespace) -> int:
    import tempfile
    import time
    from pathlib import Path

    from magec.studio.study import StudyDB, study_db_path

    study_db = study_db_path(args.study_db)
    StudyDB(study_db, create=True)  # a corrupted database is refused before the models load
    check_port_free(args.host, args.port)

    with tempfile.TemporaryDirectory(prefix="magec-studio-uploads-") as uploads:
        from magec.studio.app import configure_gradio

        configure_gradio(Path(uploads))  # before gradio is imported
        from magec.pipeline import load_pipeline
        from magec.studio.app import serve
        from magec.studio.session import Studio

        pipeline = load_pipeline(
            args.pack, args.device, perceptual=args.perceptual, generator=args.generator, precision=args.precision
        )
        studio = Studio(pipeline, steps_scale=args.steps_scale, upload_root=Path(uploads), seed=args.seed)
        try:
            app = serve(studio, args.host, args.port, study_db, block=False)
            try:  # our own wait, not gradio's (which swallows Ctrl-C): it ends as every command does, 130
                while app.is_running:
                    time.sleep(0.1)
            finally:
                app.close()
        finally:
            studio.close()
    return 0
