"""``--workers``, ``--ray``, ``--gpus-per-worker``, ``--threads-per-worker``: many workers through Ray.

Only the options live here; Ray is imported when a run asks for workers (``magec --help`` never imports it).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from magec.cli.options import positive_float, positive_int

if TYPE_CHECKING:
    from magec.distributed import WorkerOptions


def ray_address(text: str) -> str:
    """``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` (checked for form here, for reachability on use)."""
    text = text.strip()
    if text == "auto" or (":" in text and not text.startswith(":") and " " not in text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected auto, HOST:PORT or ray://HOST:PORT")


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("many workers (Ray; README 'Many GPUs')")
    group.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="N workers, each loading the pipeline once: on this machine (a local Ray instance), or with --ray "
        "on the cluster (default there: one per GPU, else one per CPU slot)",
    )
    group.add_argument(
        "--ray",
        type=ray_address,
        metavar="ADDRESS",
        help="run on a running Ray cluster: auto (the one this machine belongs to), HOST:PORT or ray://HOST:PORT",
    )
    group.add_argument(
        "--gpus-per-worker",
        type=positive_float,
        metavar="F",
        help="GPUs each worker reserves (a fraction such as 0.5 shares a GPU; default 1 when the cluster has GPUs)",
    )
    group.add_argument(
        "--threads-per-worker",
        type=positive_int,
        default=1,
        metavar="N",
        help="torch threads (and CPU slots) per worker (default 1; fixed so results do not depend on --workers)",
    )


def worker_options(args: argparse.Namespace) -> WorkerOptions | None:
    """The run's worker options, or None for a plain single-process run; one-line errors for misuse."""
    from magec.errors import MagecError

    if args.workers is None and args.ray is None:
        if args.gpus_per_worker is not None:
            raise MagecError("--gpus-per-worker needs --workers N or --ray ADDRESS")
        return None
    from magec.distributed import WorkerOptions, require_ray

    options = WorkerOptions(
        workers=args.workers,
        address=args.ray,
        gpus_per_worker=args.gpus_per_worker,
        threads_per_worker=args.threads_per_worker,
    )
    require_ray()
    return options
