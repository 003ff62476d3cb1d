"""Instance-optimisation inversion: the MAGEC method and the paper's baselines.

The settings (``config``) import nothing heavy; the optimiser (torch) loads on first use of ``invert``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magec.inversion.config import METHODS, InversionConfig, Phase, method_config

if TYPE_CHECKING:
    from magec.inversion.optimizer import InversionResult, invert

__all__ = ["METHODS", "InversionConfig", "InversionResult", "Phase", "invert", "method_config"]


def __getattr__(name: str) -> Any:
    if name in ("InversionResult", "invert"):
        from magec.inversion import optimizer

        return getattr(optimizer, name)
    raise AttributeError(f"module 'magec.inversion' has no attribute {name!r}")
