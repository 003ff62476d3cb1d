"""GANSpace editor: principal directions of the generator's latent or early activations.

For style-based generators GANSpace runs PCA on W samples directly. For generators without a style
space (here the DCGAN; in GANSpace, BigGAN) it runs PCA on early-layer activations and regresses the
principal coordinates back onto the latent, giving one latent direction per component. Directions are
unit vectors; ``sigmas`` holds the standard deviation of the samples along each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA

from magec.latent.editors import DirectionEditor
from magec.latent.kinds import GANSPACE


@dataclass
class GANSpaceConfig:
    components: int = 20
    #: Default edit step, in standard deviations along the component.
    default_sigmas: float = 2.0


class GANSpaceEditor(DirectionEditor):
    """Unit directions (K, L), named pc0..pcK-1 by decreasing explained variance."""

    traits = GANSPACE
    kind = traits.kind

    def __init__(
        self,
        directions: torch.Tensor,
        sigmas: torch.Tensor,
        explained_variance_ratio: torch.Tensor,
        default_amount: float,
    ) -> None:
        super().__init__([f"pc{i}" for i in range(directions.shape[0])], directions, default_amount)
        self.sigmas = sigmas
        self.explained_variance_ratio = explained_variance_ratio

    @classmethod
    def fit(
        cls,
        latents: torch.Tensor,
        features: torch.Tensor | None = None,
        config: GANSpaceConfig | None = None,
        seed: int = 0,
    ) -> GANSpaceEditor:
        """PCA of ``features`` (N, D) regressed onto (N, L) ``latents``; PCA of the latents without ``features``."""
        config = config or GANSpaceConfig()
        z = latents.detach().double().cpu().numpy()
        source = z if features is None else features.detach().double().cpu().numpy()
        k = min(config.components, source.shape[1], source.shape[0] - 1)
        pca = PCA(n_components=k, svd_solver="randomized" if source.shape[1] > 2000 else "full", random_state=seed)
        coords = pca.fit_transform(source)
        if features is None:
            directions = pca.components_
        else:
            # Least squares: z - mean(z) ~ coords @ U ; row k of U is the latent direction of component k.
            u, *_ = np.linalg.lstsq(coords, z - z.mean(0), rcond=None)
            directions = u
        directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        sigmas = ((z - z.mean(0)) @ directions.T).std(0)
        return cls(
            torch.tensor(directions, dtype=torch.float32),
            torch.tensor(sigmas, dtype=torch.float32),
            torch.tensor(pca.explained_variance_ratio_, dtype=torch.float32),
            default_amount=float(config.default_sigmas * sigmas.mean()),
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "directions": self.directions,
            "sigmas": self.sigmas,
            "explained_variance_ratio": self.explained_variance_ratio,
            "default_amount": torch.tensor([self.default_amount]),
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> GANSpaceEditor:
        return cls(t["directions"], t["sigmas"], t["explained_variance_ratio"], float(t["default_amount"][0]))
