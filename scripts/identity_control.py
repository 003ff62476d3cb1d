"""Control for docs/results/real-photos.md: dlib distance between the crops of *different* faces of an evaluate run.

Usage: PYTHONPATH=src python scripts/identity_control.py RUN_DIR [IMAGE_ID_TO_SKIP ...]. The same IdentityMeter as
``magec evaluate``; each ordered pair (i, j) is measured at crop i's chip.
"""

from __future__ import annotations

import glob
import itertools
import statistics
import sys
from pathlib import Path

import torch

from magec.evaluation.identity import IdentityMeter
from magec.io.images import load_image


def main(run: Path, skip: set[str]) -> None:
    torch.set_num_threads(1)
    meter = IdentityMeter.load("cpu")
    files = [f for f in sorted(glob.glob(str(run / "images/*/real.png"))) if Path(f).parent.name not in skip]
    crops = [load_image(f, 64)[0] for f in files]
    refs = [meter.reference(x) for x in crops]
    d = [meter.distances(refs[i], crops[j][None])[0] for i, j in itertools.permutations(range(len(crops)), 2)]
    under = sum(x < 0.6 for x in d)
    print(
        f"{len(files)} crops, {len(d)} ordered pairs of different faces: mean {statistics.mean(d):.3f}, "
        f"min {min(d):.3f}, under 0.6: {under} ({100 * under / len(d):.1f}%)"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), set(sys.argv[2:]))
