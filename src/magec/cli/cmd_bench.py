"""``magec bench``: speed figures on the current device (step times, MAGEC share, images per second)."""

from __future__ import annotations

import argparse
import json

from magec.cli.options import device_spec, positive_int
from magec.errors import MagecError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure step times, the MAGEC term's share and throughput", description=__doc__)
    p.add_argument("--json", action="store_true", help="print one JSON object (default: readable lines)")
    p.add_argument("--pack", help="pack to time with (default: a small embedded pack fitted on the spot)")
    p.add_argument("--device", type=device_spec, default="auto")
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--perceptual", default="auto")
    p.add_argument(
        "--stylegan2",
        default="256,1024",
        help="StyleGAN2 resolutions to time (comma-separated; 'none' to skip; 1024 takes minutes on a CPU)",
    )
    p.add_argument(
        "--studio",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the studio's server: slider change -> edited image, and one inversion (default on)",
    )
    p.add_argument(
        "--folder",
        action="store_true",
        help="also time a folder of 8 faces on 1 and 2 Ray workers (folder_images_per_s, ray_overhead_ms_per_image)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magec.bench import bench_pipeline, run_bench, stylegan2_steps

    extra = {}
    if args.stylegan2 != "none":
        try:
            resolutions = tuple(int(r) for r in args.stylegan2.split(","))
            if any(r < 4 or r > 1024 or r & (r - 1) for r in resolutions):
                raise ValueError
        except ValueError:
            raise MagecError(
                f"--stylegan2 {args.stylegan2!r}: expected comma-separated powers of two from 4 to 1024, or 'none'"
            ) from None
        extra["stylegan2_step"] = stylegan2_steps(resolutions, repeats=min(args.repeats, 3))
    served = None
    if args.studio:
        from magec.studio.bench import studio_figures

        served = studio_figures
    if args.folder:
        from magec.distributed import require_ray

        require_ray()  # before the pipeline loads
    pipeline = bench_pipeline(args.device, args.pack, args.perceptual)
    if args.folder:
        from magec.distributed.bench import folder_throughput

        extra["folder"] = lambda device: folder_throughput(pipeline)
    result = run_bench(pipeline, repeats=args.repeats, extra=extra, served=served)
    result.update(result.pop("folder", None) or {})
    if "ray_overhead_ms_per_image" in result:  # against one full embedded inversion (the paper's 200 steps)
        full_ms = result["step_ms"]["magec"] * 200
        result["ray_overhead_share_of_inversion"] = round(result["ray_overhead_ms_per_image"] / full_ms, 5)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0
