"""SeFa editor (Shen & Zhou, 2021): closed-form semantic directions from the generator's weights.

The first layer a latent code feeds is affine, y = A z + b, so moving z by a n moves y by a A n. SeFa
picks the unit directions that move y the most: the maximisers of ||A n||^2 subject to ||n|| = 1 are the
eigenvectors of A^T A, ranked by eigenvalue. No sampling and no training: A comes from the generator
(``Generator.sefa_weight``): for StyleGAN2 the concatenated style-modulation weights of all layers or a
layer range (W+ indices, as SeFa allows), for the DCGAN its first transposed convolution.

As in SeFa's public release, each row of A (one output feature) is normalised to unit length first, so
wide layers and large-weight channels do not dominate; ``SeFaConfig.normalize_rows`` turns that off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from magec.latent.editors import DirectionEditor
from magec.latent.kinds import SEFA


class HasSeFaWeight(Protocol):
    def sefa_weight(self, layers: list[int] | None = None) -> torch.Tensor: ...


@dataclass
class SeFaConfig:
    components: int = 20
    #: W+ indices whose weights are factorised (StyleGAN2); None = all layers, SeFa's default.
    layers: list[int] | None = None
    #: Normalise each row of A to unit length before factorising (SeFa's release does).
    normalize_rows: bool = True
    #: Default edit step, in standard deviations of the latent samples along the direction (SeFa's
    #: interface walks up to 3); without samples, in latent units (std 1 along any direction of z ~ N(0, I)).
    default_sigmas: float = 3.0


def sefa_directions(
    weight: torch.Tensor, components: int, normalize_rows: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``components`` eigenvectors (K, L) of A^T A, orthonormal rows, and their eigenvalues (K,), descending.

    Signs are fixed so each direction's largest-magnitude entry is positive (eigenvectors have no sign).
    """
    a = weight.detach().double().cpu()
    if a.dim() != 2:
        raise ValueError(f"SeFa needs a 2-D weight (out_features, latent_dim), got shape {tuple(a.shape)}")
    if normalize_rows:
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    values, vectors = torch.linalg.eigh(a.T @ a)  # ascending
    k = min(components, a.shape[1])
    values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k].T
    pivot = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors.gather(1, pivot[:, None]))
    return (vectors * signs).float(), values.float()


class SeFaEditor(DirectionEditor):
    """Unit directions (K, L) named sefa0..sefaK-1 by decreasing eigenvalue.

    For per-layer codes (B, n, L) with a layer range, only the factorised layers move, as in SeFa;
    (B, L) codes feed every layer and move as a whole.
    """

    traits = SEFA
    kind = traits.kind

    def __init__(
        self,
        directions: torch.Tensor,
        eigenvalues: torch.Tensor,
        sigmas: torch.Tensor,
        default_amount: float,
        layers: list[int] | None = None,
    ) -> None:
        super().__init__([f"sefa{i}" for i in range(directions.shape[0])], directions, default_amount)
        self.eigenvalues = eigenvalues
        self.sigmas = sigmas
        self.layers = None if layers is None else [int(i) for i in layers]

    @classmethod
    def fit(
        cls, generator: HasSeFaWeight, latents: torch.Tensor | None = None, config: SeFaConfig | None = None
    ) -> SeFaEditor:
        """Factorise the generator's first-layer weight; ``latents`` (N, L), if given, only set the step size."""
        config = config or SeFaConfig()
        with torch.no_grad():
            weight = generator.sefa_weight(config.layers)
        directions, eigenvalues = sefa_directions(weight, config.components, config.normalize_rows)
        if latents is not None:
            x = latents.detach().double().cpu().flatten(1)
            sigmas = ((x - x.mean(0)) @ directions.double().T).std(0).float()
        else:
            sigmas = torch.ones(directions.shape[0])
        return cls(directions, eigenvalues, sigmas, float(config.default_sigmas * sigmas.mean()), config.layers)

    def edit(self, latents: torch.Tensor, operation: str, amount: float) -> torch.Tensor:
        step = amount * self.directions[self.index(operation)].to(latents)
        if latents.dim() == 3 and self.layers is not None:
            mask = torch.zeros(latents.shape[1], 1, dtype=latents.dtype, device=latents.device)
            mask[[i for i in self.layers if i < latents.shape[1]]] = 1.0
            step = mask * step
        return latents + step

    def tensors(self) -> dict[str, torch.Tensor]:
        layers = torch.tensor(self.layers if self.layers is not None else [-1], dtype=torch.int64)
        return {
            "directions": self.directions,
            "eigenvalues": self.eigenvalues,
            "sigmas": self.sigmas,
            "default_amount": torch.tensor([self.default_amount]),
            "layers": layers,
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> SeFaEditor:
        layers = t["layers"].tolist()
        return cls(
            t["directions"],
            t["eigenvalues"],
            t["sigmas"],
            float(t["default_amount"][0]),
            None if layers == [-1] else layers,
        )
