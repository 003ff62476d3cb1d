"""Checks of user-supplied numbers, shared by the config dataclasses and the command line.

Every library entry point validates its configuration once, with these functions, so the Python API
refuses exactly what the CLI refuses. Each check returns the value (converted) or raises a one-line
``MagecError`` naming the setting. This module imports nothing heavy: the CLI uses it before torch loads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from magec.errors import MagecError

#: Largest side, in pixels, of an image magec writes (alignment, previews); 4096 px RGB is 48 MiB.
MAX_OUTPUT_SIDE = 4096
#: Largest input image, in pixels, read without ``--max-pixels``: about 3 bytes per pixel once decoded.
DEFAULT_MAX_PIXELS = 180_000_000
#: Largest edit step accepted, in latent units: far beyond any useful edit, still finite arithmetic.
MAX_EDIT_AMOUNT = 1e4


def finite(name: str, value: Any) -> float:
    """``value`` as a float; NaN and infinities are refused."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MagecError(f"{name} {value!r}: expected a number") from None
    if not math.isfinite(number):
        raise MagecError(f"{name} {value!r}: must be a finite number")
    return number


def positive(name: str, value: Any) -> float:
    number = finite(name, value)
    if number <= 0:
        raise MagecError(f"{name} {value!r}: must be greater than 0")
    return number


def non_negative(name: str, value: Any) -> float:
    number = finite(name, value)
    if number < 0:
        raise MagecError(f"{name} {value!r}: must not be negative")
    return number


def in_range(name: str, value: Any, low: float, high: float) -> float:
    number = finite(name, value)
    if not low <= number <= high:
        raise MagecError(f"{name} {value!r}: must be between {low:g} and {high:g}")
    return number


def integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int within [minimum, maximum] (either bound optional); bools and fractions are refused."""
    if isinstance(value, bool):
        raise MagecError(f"{name} {value!r}: expected a whole number")
    try:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None:
        raise MagecError(f"{name} {value!r}: expected a whole number")
    if minimum is not None and number < minimum:
        raise MagecError(f"{name} {value!r}: must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise MagecError(f"{name} {value!r}: must be at most {maximum}")
    return number


def choice(name: str, value: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise MagecError(f"{name} {value!r}: choose from {', '.join(allowed)}")
    return value
