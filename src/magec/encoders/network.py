"""magec's own encoder: a compact convolutional network trained from a pack's generator alone.

Strided convolutions (GroupNorm, LeakyReLU) halve the image down to 4x4, the features are pooled to a small grid
and a two-layer head gives the code. For a generator with a ``w+`` space (StyleGAN2) the head gives W+ codes as
offsets added to the generator's mean W, kept as a buffer (as e4e does), so the untrained network starts at the
mean; otherwise it gives codes in the generator's editing space (``z`` for the embedded DCGAN). The network reads
the generator's resolution, capped at :data:`MAX_RESOLUTION` (larger images are resized down first).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from magec.encoders.base import Encoder
from magec.errors import MagecError
from magec.generators.base import Generator

#: The largest side the network reads; a 1024-px generator's images are resized down to it.
MAX_RESOLUTION = 256
SPEC = "magec-encoder"
#: The largest code (numbers per image) the head predicts: StyleGAN2 at 1024 px has 18 x 512.
MAX_CODE_SIZE = 32 * 1024


@dataclass(frozen=True)
class EncoderArchitecture:
    """The network's size: stored in every encoder file, so a file rebuilds exactly the network that wrote it."""

    #: Channels of the first strided convolution; each later one doubles it, up to ``max_width``.
    width: int = 32
    max_width: int = 256
    #: Extra stride-1 convolutions after each strided one (more capacity, same output size).
    extra_convs: int = 1
    #: The last feature map is average-pooled to ``pool`` x ``pool`` before the head.
    pool: int = 4
    hidden: int = 512
    groups: int = 8

    def __post_init__(self) -> None:
        # Bounded, so that a file's metadata can never make magec build a huge network before its tensors are read.
        limits = {"width": 1024, "max_width": 1024, "pool": 4, "hidden": 8192, "groups": 64}
        for name, most in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
                raise MagecError(f"encoder architecture: {name} must be a whole number from 1 to {most}, got {value!r}")
        if not isinstance(self.extra_convs, int) or not 0 <= self.extra_convs <= 4:
            raise MagecError(f"encoder architecture: extra_convs must be 0..4, got {self.extra_convs!r}")
        if self.width % self.groups or self.max_width % self.groups:
            raise MagecError(f"encoder architecture: widths must be multiples of groups ({self.groups})")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> EncoderArchitecture:
        if not isinstance(data, dict) or set(data) - set(cls.__dataclass_fields__):
            raise ValueError(f"not an encoder architecture: {str(data)[:100]}")
        return cls(**data)


def encoder_space(generator: Generator) -> str:
    """The space magec's encoder predicts for ``generator``: ``w+`` where it has one, else its editing space."""
    return "w+" if "w+" in generator.spaces else generator.editing_space.name


def _block(c_in: int, c_out: int, stride: int, groups: int) -> list[nn.Module]:
    kernel, padding = (4, 1) if stride == 2 else (3, 1)
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding), nn.GroupNorm(groups, c_out), nn.LeakyReLU(0.2)]


class MagecEncoder(Encoder):
    """Images -> codes of one generator (see the module docstring); build one with :meth:`for_generator`."""

    spec = SPEC

    def __init__(
        self,
        resolution: int,
        space: str,
        code_shape: tuple[int, ...],
        architecture: EncoderArchitecture | None = None,
        mean_code: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1) or resolution > MAX_RESOLUTION:
            raise MagecError(f"{SPEC}: resolution {resolution} must be a power of two from 8 to {MAX_RESOLUTION}")
        self.architecture = architecture or EncoderArchitecture()
        self.resolution = resolution
        self.space = space
        self._code_shape = tuple(int(s) for s in code_shape)
        arch = self.architecture
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(int(math.log2(resolution)) - 2):  # down to 4x4
            c_out = min(arch.width * 2**i, arch.max_width)
            layers += _block(c_in, c_out, 2, arch.groups)
            for _ in range(arch.extra_convs):
                layers += _block(c_out, c_out, 1, arch.groups)
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(arch.pool)
        n_out = math.prod(self._code_shape)
        if not 1 <= n_out <= MAX_CODE_SIZE:
            raise MagecError(f"{SPEC}: a code of shape {self._code_shape} is not one magec's encoder makes")
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * arch.pool**2, arch.hidden), nn.LeakyReLU(0.2))
        self.out = nn.Linear(arch.hidden, n_out)
        # The codes are offsets from the mean (W+: e4e's convention); z codes have a zero mean.
        mean = torch.zeros(self._code_shape) if mean_code is None else mean_code.detach().float().reshape(code_shape)
        self.register_buffer("mean_code", mean.clone())

    @classmethod
    def for_generator(
        cls, generator: Generator, architecture: EncoderArchitecture | None = None, seed: int = 0
    ) -> MagecEncoder:
        """A freshly initialised encoder (seeded: same seed, same weights) for ``generator``'s codes."""
        space = encoder_space(generator)
        shape = generator.spaces[space].shape
        mean = None
        if space == "w+":
            with torch.no_grad():
                w_avg = generator.initial_latent().detach().float().cpu()
                mean = generator.convert_latents(w_avg[None], generator.editing_space.name, "w+")[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(min(generator.resolution, MAX_RESOLUTION), space, shape, architecture, mean)
        if space == "w+":  # start exactly at the mean W: a good first code before any training
            nn.init.zeros_(model.out.weight)
            nn.init.zeros_(model.out.bias)
        return model

    @property
    def code_shape(self) -> tuple[int, ...]:
        return self._code_shape

    def encode_resized(self, images: torch.Tensor) -> torch.Tensor:
        x = self.head(self.pool(self.features(images)))
        return self.mean_code + self.out(x).view(images.shape[0], *self._code_shape)

    def settings(self) -> dict[str, Any]:
        """What a file records to rebuild this network."""
        return {
            "resolution": self.resolution,
            "space": self.space,
            "code_shape": list(self._code_shape),
            "architecture": json.loads(self.architecture.to_json()),
        }
