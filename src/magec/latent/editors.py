"""Latent editors: differentiable functions latent -> edited latent.

Every editor follows one small protocol so that inversion (the MAGEC loss), ``magec edit`` and the
evaluation treat them alike:

- ``traits``: what kind of editor it is (``magec.latent.kinds``: family, ranked, MAGEC-usable, ...), and
  ``kind``, its name there ("interfacegan", "ganspace", "interpolate", ...);
- ``operations()``: the named edits it offers (attribute names, "pc0".., or none for a target editor such as
  interpolation, whose operations are "sample:<seed>");
- ``default_amount``: a sensible step size in latent units;
- ``edit(latents, operation, amount)``: works on (B, L) codes and on per-layer (B, n, L) codes (W+),
  is differentiable, and is undone by ``edit(..., -amount)`` for the linear editors.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from magec.latent.kinds import DIRECTIONS, EditorTraits


@runtime_checkable
class LatentEditor(Protocol):
    traits: EditorTraits
    kind: str
    default_amount: float

    def operations(self) -> list[str]: ...

    def edit(self, latents: torch.Tensor, operation: str, amount: float) -> torch.Tensor: ...


def shift(latents: torch.Tensor, direction: torch.Tensor, amount: float | torch.Tensor) -> torch.Tensor:
    """latents + amount * direction, broadcasting a (L,) direction over (B, L) or (B, n, L) codes."""
    return latents + amount * direction.to(latents)


class DirectionEditor:
    """Edits along fixed unit directions, one per named operation (the common core of InterfaceGAN and GANSpace)."""

    traits = DIRECTIONS
    kind = traits.kind

    def __init__(self, names: list[str], directions: torch.Tensor, default_amount: float) -> None:
        if directions.dim() != 2 or directions.shape[0] != len(names):
            raise ValueError(f"expected {len(names)} directions, got a tensor of shape {tuple(directions.shape)}")
        self.names = list(names)
        self.directions = directions
        self.default_amount = float(default_amount)

    def operations(self) -> list[str]:
        return list(self.names)

    def index(self, operation: str) -> int:
        try:
            return self.names.index(operation)
        except ValueError:
            raise KeyError(f"{self.kind} has no operation {operation!r}; available: {', '.join(self.names)}") from None

    def edit(self, latents: torch.Tensor, operation: str, amount: float) -> torch.Tensor:
        return shift(latents, self.directions[self.index(operation)], amount)

    def to(self, device: torch.device | str) -> DirectionEditor:
        self.directions = self.directions.to(device)
        return self
