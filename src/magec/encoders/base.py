"""The interface every image-to-latent encoder implements in magec.

An encoder gives a latent code for a photo in one forward pass: the instant first look of the studio, and a
start for the optimisation (``magec invert --init encoder``) that needs far fewer steps than the generator's
mean. magec trains its own (``magec.encoders.training``) and reads e4e's published checkpoints.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import nn

from magec.errors import MagecError
from magec.generators.base import Generator


class Encoder(nn.Module, abc.ABC):
    """Images (B, 3, R, R) in [-1, 1] -> codes (B, *shape of ``space``) of one generator.

    Subclasses set ``spec`` (recorded in outputs, e.g. ``"magec-encoder"`` or ``"e4e"``), ``resolution``
    (the side of the images the network reads; others are resized to it) and ``space`` (the generator
    space its codes live in: ``"z"``, ``"w"`` or ``"w+"``), and implement ``encode_resized``.
    """

    spec: str = ""
    resolution: int = 0
    space: str = ""

    @abc.abstractmethod
    def encode_resized(self, images: torch.Tensor) -> torch.Tensor:
        """Codes for images already at ``self.resolution``."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise MagecError(f"{self.spec or 'encoder'}: expected images (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2:] != (self.resolution, self.resolution):
            images = F.interpolate(
                images, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False, antialias=True
            )
        return self.encode_resized(images)

    def check_generator(self, generator: Generator) -> None:
        """Refuse, in one line, a generator whose space this encoder's codes do not fit."""
        space = generator.spaces.get(self.space)
        if space is None:
            raise MagecError(
                f"{self.spec or 'encoder'}: gives codes in {self.space!r}, which {generator.spec} does not have "
                f"(its spaces: {', '.join(generator.spaces)})"
            )
        shape = self.code_shape
        if shape is not None and tuple(shape) != tuple(space.shape):
            raise MagecError(
                f"{self.spec or 'encoder'}: gives {self.space} codes of shape {tuple(shape)}, but {generator.spec} "
                f"({generator.resolution} px) needs {tuple(space.shape)}: the encoder was made for another generator"
            )

    @property
    def code_shape(self) -> tuple[int, ...] | None:
        """The shape of one code, where the network knows it before running (None: not known)."""
        return None

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Codes for any number of images, ``batch_size`` at a time, without gradients, on the encoder's device."""
        device = next(self.parameters()).device
        out = [self(images[i : i + batch_size].to(device)) for i in range(0, images.shape[0], batch_size)]
        return torch.cat(out)
