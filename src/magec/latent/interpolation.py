"""Interpolation editor: walk from a code towards another generator sample (the paper's fourth editor)."""

from __future__ import annotations

import torch

from magec.generators.base import Generator
from magec.latent.kinds import INTERPOLATE


class InterpolationEditor:
    """``edit(z, "sample:<seed>", t) = z + t * (z_seed - z)``; z_seed is the generator's sample for that seed."""

    traits = INTERPOLATE
    kind = traits.kind
    #: t: halfway to the target, fixed by the kind (not fitted).
    default_amount = INTERPOLATE.default_amount

    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    def operations(self) -> list[str]:
        """None listed: a target editor's operations are "sample:<seed>" for any seed."""
        return []

    def target(self, operation: str, like: torch.Tensor) -> torch.Tensor:
        prefix, _, seed = operation.partition(":")
        if prefix != "sample" or not seed.lstrip("-").isdigit():
            raise KeyError(f"interpolate operations look like 'sample:<seed>', not {operation!r}")
        target = self.generator.sample_latents(1, int(seed))[0].to(like)
        if like.dim() == 3 and target.dim() == 1:  # per-layer codes: the same target on every layer
            target = target.expand(like.shape[1], -1)
        return target

    def edit(self, latents: torch.Tensor, operation: str, amount: float) -> torch.Tensor:
        return latents + amount * (self.target(operation, latents[0]) - latents)
