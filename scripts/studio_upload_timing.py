"""How long the studio takes from an upload to its framed photo (what precedes any projection), and how many face
detections that runs.

The embedded default (``load_pipeline()``: the face DCGAN and dlib's F, the cached embedded pack) and
scikit-image's astronaut saved at a few sizes into the studio's upload folder; ``Studio.read_upload`` (decode,
find the face, frame it, the landmarks for pasting back) is timed ``--repeat`` times per size after one warm-up.
Medians are printed with the load (``os.getloadavg``) before and after, since the machine may be shared. The first
upload, ``--start-gap`` seconds after the studio was made (a page takes a few seconds to load), is timed apart:
it waits for whatever of dlib's models is not read yet.

Usage::

    PYTHONPATH=src .venv/bin/python scripts/studio_upload_timing.py --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image


def _count_detections() -> list[int]:
    """Count dlib frontal-detector runs (both of magec's detection paths) by wrapping the detector factory."""
    import dlib

    calls = [0]
    make = dlib.get_frontal_face_detector

    class Counted:
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, *args, **kwargs):
            calls[0] += 1
            return self.inner(*args, **kwargs)

        def run(self, *args, **kwargs):
            calls[0] += 1
            return self.inner.run(*args, **kwargs)

    dlib.get_frontal_face_detector = lambda: Counted(make())
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--start-gap", type=float, default=5.0, help="seconds from the studio's start to the first")
    args = parser.parse_args()

    import torch
    from skimage import data

    from magec.pipeline import load_pipeline
    from magec.studio.session import Studio

    torch.set_num_threads(1)
    calls = _count_detections()
    pipeline = load_pipeline(device="cpu", perceptual="describer-features", identity="none")
    astronaut = Image.fromarray(data.astronaut())
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for side in args.sizes:
            paths[side] = Path(tmp) / f"astronaut-{side}.png"
            astronaut.resize((side, side), Image.Resampling.LANCZOS).save(paths[side])
        studio = Studio(pipeline, upload_root=Path(tmp))
        studio.warm_up()  # as ``serve`` does while the page starts
        try:
            time.sleep(args.start_gap)
            started = time.perf_counter()
            studio.read_upload(paths[args.sizes[0]])
            print(
                f"first upload ({args.sizes[0]} px, {args.start_gap:g} s after the studio started): "
                f"{(time.perf_counter() - started) * 1000:.0f} ms"
            )
            for side in args.sizes:
                path = paths[side]
                studio.read_upload(path)  # warm-up (models loaded, caches filled)
                calls[0] = 0
                times = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    studio.read_upload(path)
                    times.append(time.perf_counter() - started)
                per_upload = calls[0] / args.repeat
                print(
                    f"{side}x{side} px: read_upload median {statistics.median(times) * 1000:.0f} ms "
                    f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}), "
                    f"{per_upload:g} face detection(s) per upload"
                )
        finally:
            studio.close()
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
