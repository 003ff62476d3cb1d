"""``magec bench``: speed figures on the current device (step times, MAGEC share, images per second)."""

from __future__ import annotations

import argparse
import json

from magec.bench import bench_pipeline, run_bench


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure step times, the MAGEC term's share and throughput", description=__doc__)
    p.add_argument("--json", action="store_true", help="print one JSON object (default: readable lines)")
    p.add_argument("--pack", help="pack to time with (default: a small embedded pack fitted on the spot)")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--perceptual", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = run_bench(bench_pipeline(args.device, args.pack, args.perceptual), repeats=args.repeats)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0
