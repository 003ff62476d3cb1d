"""Does MAGEC's gain grow with the number of attributes? (issue 12: the paper's "2 attributes instead of 40")

Two evaluation runs on the same images, edits and seed: ``ALL`` (methods magec and no-magec, MAGEC's loss
over every attribute of the pack) and ``TWO`` (method magec with ``--attributes male,age``). Per image, every
metric is averaged over that image's edits of one editor; MAGEC's gain is no-magec minus magec for
lower-is-better metrics (MSE, ECS, identity distance) and magec minus no-magec for higher-is-better ones
(realism, t). The paired t-test of gain(all) against gain(2) is the paired test of magec[all] against
magec[2], since no-magec is shared.

    PYTHONPATH=src python docs/figures/attributes_study.py runs/embedded runs/embedded-2attrs > study.md
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from magec.evaluation.stats import paired_t_test

#: (csv file, value column, group-by column or None, higher is better)
METRICS = [
    ("reconstruction.csv", "mse", None, False),
    ("reconstruction.csv", "lpips", None, False),
    ("reconstruction.csv", "id_distance", None, False),
    ("edits.csv", "realism", "editor", True),
    ("edits.csv", "t", "editor", True),
    ("ecs.csv", "ecs", "editor", False),
]


def per_image(run: Path, name: str, column: str, group: str | None, method: str) -> dict[str, dict[str, float]]:
    """{metric label: {image: mean value}} for one method of one run."""
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with (run / name).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["method"] != method or row.get(column, "") in ("", None):
                continue
            label = f"{column} [{row[group]}]" if group else column
            sums[label][row["image"]].append(float(row[column]))
    return {label: {img: float(np.mean(v)) for img, v in imgs.items()} for label, imgs in sums.items()}


def fmt(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("all_run", type=Path, help="run with magec (all attributes) and no-magec")
    parser.add_argument("two_run", type=Path, help="run with magec restricted by --attributes")
    args = parser.parse_args()
    print("| metric | n | gain, all attributes | p (vs 0) | gain, 2 attributes | p (vs 0) | all - 2 | p (paired) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, column, group, higher in METRICS:
        base = per_image(args.all_run, name, column, group, "no-magec")
        full = per_image(args.all_run, name, column, group, "magec")
        two = per_image(args.two_run, name, column, group, "magec")
        for label in sorted(set(base) & set(full) & set(two)):
            images = sorted(set(base[label]) & set(full[label]) & set(two[label]))
            sign = 1.0 if higher else -1.0
            g_all = [sign * (full[label][i] - base[label][i]) for i in images]
            g_two = [sign * (two[label][i] - base[label][i]) for i in images]
            zeros = [0.0] * len(images)
            t_all, t_two, t_diff = paired_t_test(g_all, zeros), paired_t_test(g_two, zeros), paired_t_test(g_all, g_two)
            print(
                f"| {label} {'↑' if higher else '↓'} | {len(images)} | {fmt(t_all.mean_difference)} | {fmt(t_all.pvalue)}"
                f" | {fmt(t_two.mean_difference)} | {fmt(t_two.pvalue)} | {fmt(t_diff.mean_difference)}"
                f" | {fmt(t_diff.pvalue)} |"
            )


if __name__ == "__main__":
    main()
