"""Instance-optimisation inversion: the MAGEC method and the paper's baselines."""

from magec.inversion.config import METHODS, InversionConfig, Phase, method_config
from magec.inversion.optimizer import InversionResult, invert

__all__ = ["METHODS", "InversionConfig", "InversionResult", "Phase", "invert", "method_config"]
