"""Encoders: a latent code for a photo in one forward pass (magec's own, trained from a pack; e4e's)."""

from magec.encoders.base import Encoder

__all__ = ["Encoder"]
