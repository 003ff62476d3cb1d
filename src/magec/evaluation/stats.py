"""Paired Student's t-test between two inversion methods on the same edits (the paper's Table 2)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class PairedTest:
    """Result of a paired t-test of ``a`` against ``b``: mean difference a - b, t statistic, two-sided p."""

    n: int
    mean_difference: float
    statistic: float
    pvalue: float

    def significant(self, alpha: float = 0.05) -> bool:
        return not math.isnan(self.pvalue) and self.pvalue < alpha


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Two-sided paired t-test (scipy.stats.ttest_rel); pairs where either value is NaN are dropped.

    With fewer than two pairs, or identical samples, the p-value is NaN (no evidence either way).
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.shape} vs {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = int(x.size)
    diff = float(np.mean(x - y)) if n else float("nan")
    if n < 2 or not np.any(x - y):
        return PairedTest(n, diff, float("nan"), float("nan"))
    with warnings.catch_warnings():  # constant differences (e.g. equal step counts) are fine: t = +-inf, p = 0
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(x, y)
    return PairedTest(n, diff, float(res.statistic), float(res.pvalue))
