"""Latent statistics (mean, covariance) of generator samples, for initialisation and interpolation."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LatentStats:
    mean: torch.Tensor
    covariance: torch.Tensor
    #: The generator's starting point for inversion (its ``initial_latent()``), stored for provenance.
    initial: torch.Tensor

    @classmethod
    def fit(cls, latents: torch.Tensor, initial: torch.Tensor) -> LatentStats:
        x = latents.detach().double()
        return cls(x.mean(0).float(), torch.cov(x.T).float(), initial.detach().float().cpu())

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "covariance": self.covariance, "initial": self.initial}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> LatentStats:
        return cls(t["mean"], t["covariance"], t["initial"])
