"""Does the encoder trained with the MAGEC term beat the plain one? Paired over the same generated faces.

Reads the plot-and-CSV folders beside two `magec evaluate` reports (REPORT.md -> REPORT/) whose runs inverted the same `--generated N` faces with the same seed, one with
`--encoder PLAIN.safetensors`, one with `--encoder MAGEC_TERM.safetensors`, and prints, per method present in both
(`encoder`, `encoder+magec`), the mean of each per-image figure in each run and a paired t-test (scipy) between them.

    python docs/figures/encoder_pair_study.py RUN_PLAIN RUN_MAGEC_TERM
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

from scipy import stats


def per_image(run: Path, name: str, column: str) -> dict[tuple[str, str], float]:
    """(image, method) -> mean of ``column`` over that image's rows of ``name`` (edits have several rows)."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    with open(run / name, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get(column) not in (None, ""):
                sums[(row["image"], row["method"])].append(float(row[column]))
    return {key: sum(values) / len(values) for key, values in sums.items()}


FIGURES = (
    ("reconstruction.csv", "mse", "MSE"),
    ("reconstruction.csv", "lpips", "perceptual"),
    ("reconstruction.csv", "id_distance", "ID distance"),
    ("edits.csv", "t", "edit target change t"),
    ("ecs.csv", "ecs", "ECS"),
)


def main(plain: Path, magec_term: Path) -> None:
    print("| method | figure | plain encoder | MAGEC-term encoder | n | paired t-test p |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method in ("encoder", "encoder+magec"):
        for name, column, label in FIGURES:
            a, b = per_image(plain, name, column), per_image(magec_term, name, column)
            keys = sorted(k for k in a if k in b and k[1] == method)
            if len(keys) < 2:
                continue
            x, y = [a[k] for k in keys], [b[k] for k in keys]
            p = stats.ttest_rel(x, y).pvalue
            print(f"| {method} | {label} | {sum(x) / len(x):.4g} | {sum(y) / len(y):.4g} | {len(keys)} | {p:.3g} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
