"""Instance-optimisation inversion: the MAGEC method and the paper's baselines.

The settings (``config``) import nothing heavy; the optimiser (torch) loads on first use of ``invert``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magec.inversion.config import METHODS, InversionConfig, Phase, method_config

if TYPE_CHECKING:
    from magec.inversion.optimizer import InversionResult, StepCallback, StepInfo, invert
    from magec.inversion.progress import ProgressBar

__all__ = [
    "METHODS",
    "InversionConfig",
    "InversionResult",
    "Phase",
    "ProgressBar",
    "StepCallback",
    "StepInfo",
    "invert",
    "method_config",
]


def __getattr__(name: str) -> Any:
    if name in ("InversionResult", "StepCallback", "StepInfo", "invert"):
        from magec.inversion import optimizer

        return getattr(optimizer, name)
    if name == "ProgressBar":
        from magec.inversion.progress import ProgressBar

        return ProgressBar
    raise AttributeError(f"module 'magec.inversion' has no attribute {name!r}")
