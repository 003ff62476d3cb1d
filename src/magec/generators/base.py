"""The interface every pretrained GAN implements in magec.

A generator maps latent codes to images in [-1, 1], NCHW. It names the latent spaces an optimiser may
work in (``z`` for a plain GAN; ``w``, ``w+`` and noise maps for StyleGAN2). One of them is the
*editing space*: where LinkNet, the editors and latent statistics live, and what ``sample_latents``
returns. Inversion optimises in the editing space unless a method asks for another (Image2StyleGAN++
uses ``w+`` then noise).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from magec.devices import module_device
from magec.errors import MagecError

#: Arithmetic a generator's synthesis can run in (``--precision``); images are float32 either way.
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class LatentSpace:
    """One optimisable latent space: its name and the shape of one sample's code."""

    name: str
    shape: tuple[int, ...]


def select_noise(noise: list[torch.Tensor] | None, index: int, repeat: int = 1) -> list[torch.Tensor] | None:
    """The noise maps of image ``index`` of a batch (or the shared maps of a batch of one), repeated ``repeat`` times.

    Edited copies of one inverted image must keep that image's noise; ``None`` / empty stays as it is.
    """
    if not noise:
        return noise
    out = []
    for n in noise:
        one = n[index : index + 1] if n.shape[0] > 1 else n[:1]
        out.append(one.expand(repeat, *one.shape[1:]).contiguous())
    return out


class Generator(nn.Module, abc.ABC):
    """A pretrained GAN generator behind magec's common interface.

    Subclasses set ``resolution`` and ``spaces`` (name -> LatentSpace; the first entry is the editing
    space) and implement ``sample_latents``, ``synthesize`` and ``initial_latent``. Generators are
    always in eval mode with frozen weights: inversion optimises latents, never the network.
    """

    #: A short, stable identifier recorded in pack manifests, e.g. ``"dcgan-face"``.
    spec: str = ""
    resolution: int = 0
    spaces: dict[str, LatentSpace]
    #: Arithmetic of the synthesis network; set only inside ``precision(...)``.
    compute_dtype: torch.dtype = torch.float32
    #: Precisions other than fp32 this generator implements (StyleGAN2: bf16).
    reduced_precisions: tuple[str, ...] = ()

    def set_precision(self, name: str) -> None:
        """Synthesise in ``name`` ("fp32" or "bf16") from now on (``--precision``; this generator only).

        Images come out as float32 either way; the losses and the optimiser stay in float32.
        """
        if name not in PRECISIONS:
            raise MagecError(f"--precision: {name!r} is not one of {', '.join(PRECISIONS)}")
        if name != "fp32" and name not in self.reduced_precisions:
            raise MagecError(f"--precision {name}: the {self.spec or type(self).__name__} generator runs in fp32 only")
        self.compute_dtype = PRECISIONS[name]

    @property
    def precision_name(self) -> str:
        return next(k for k, v in PRECISIONS.items() if v == self.compute_dtype)

    @contextlib.contextmanager
    def precision(self, name: str) -> Iterator[None]:
        """``set_precision(name)`` inside the block only."""
        before = self.precision_name
        self.set_precision(name)
        try:
            yield
        finally:
            self.compute_dtype = PRECISIONS[before]

    @property
    def editing_space(self) -> LatentSpace:
        """The space where LinkNet and editors live (the first of ``spaces``)."""
        return next(iter(self.spaces.values()))

    @property
    def latent_dim(self) -> int:
        """Flattened size of one code in the editing space."""
        n = 1
        for s in self.editing_space.shape:
            n *= s
        return n

    @property
    def device(self) -> torch.device:
        return module_device(self)

    @property
    def has_noise(self) -> bool:
        """True when the generator has per-layer noise inputs that an optimiser may tune."""
        return False

    @abc.abstractmethod
    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        """``n`` random codes in the editing space, shape (n, *editing_space.shape); same seed, same codes."""

    @abc.abstractmethod
    def synthesize(
        self, latents: torch.Tensor, space: str | None = None, noise: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Images in [-1, 1], shape (B, 3, resolution, resolution), from codes in ``space`` (default: editing space)."""

    @abc.abstractmethod
    def initial_latent(self) -> torch.Tensor:
        """The code inversion starts from (the paper's average latent), shape editing_space.shape.

        It must be a point where the gradient of the image with respect to the code is non-zero.
        """

    def convert_latents(self, latents: torch.Tensor, source: str, target: str) -> torch.Tensor:
        """Map codes between spaces where that is a fixed function (e.g. ``w`` -> ``w+`` by repetition)."""
        if source == target:
            return latents
        raise ValueError(f"{self.spec}: cannot convert latents from {source!r} to {target!r}")

    def make_noise(self, batch: int, seed: int) -> list[torch.Tensor]:
        """Per-layer noise maps for ``batch`` images (empty for generators without noise inputs)."""
        return []

    def pca_features(self, latents: torch.Tensor) -> torch.Tensor | None:
        """Activations GANSpace runs PCA on, shape (B, D); ``None`` means PCA of the latents themselves.

        GANSpace uses PCA of W for style-based generators and PCA of early-layer activations,
        regressed back to the latent, for generators without a style space (as for BigGAN).
        """
        return None

    def sefa_weight(self, layers: list[int] | None = None) -> torch.Tensor:
        """The weight A (out_features, latent_dim) of the first linear map(s) the editing-space code feeds (SeFa).

        ``layers`` picks a subset where the code feeds several maps (StyleGAN2: W+ indices); None = all.
        """
        raise ValueError(f"{self.spec or type(self).__name__}: SeFa is not available for this generator")

    def train(self, mode: bool = True) -> Generator:  # always frozen
        return super().train(False)
