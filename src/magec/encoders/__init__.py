"""Encoders: a latent code for a photo in one forward pass (magec's own, trained from a pack; e4e's).

``Encoder`` is handed out lazily so that :mod:`magec.encoders.names` (file names and spec prefixes) can be
read without importing torch: ``magec invert --help`` and a refused ``--init`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from magec.encoders.base import Encoder

__all__ = ["Encoder"]


def __getattr__(name: str) -> Any:
    if name == "Encoder":
        from magec.encoders.base import Encoder

        return Encoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
