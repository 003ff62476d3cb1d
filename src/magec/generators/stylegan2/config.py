"""Architecture of a StyleGAN2 generator: everything needed to rebuild it before loading weights."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from magec.errors import MagecError


def rosinality_channels(resolution: int, channel_multiplier: int = 2) -> tuple[int, ...]:
    """Feature maps per resolution 4, 8, ..., ``resolution`` as in rosinality's stylegan2-pytorch.

    512 up to 32x32, then 16384 * multiplier / resolution (config-f: multiplier 2).
    """
    table = {4: 512, 8: 512, 16: 512, 32: 512}
    return tuple(table.get(r, 16384 * channel_multiplier // r) for r in _resolutions(resolution))


def _resolutions(resolution: int) -> list[int]:
    return [2**i for i in range(2, int(math.log2(resolution)) + 1)]


@dataclass(frozen=True)
class StyleGAN2Config:
    """StyleGAN2 generator architecture; the defaults are config-f at 1024x1024.

    ``channels`` lists the feature maps at 4, 8, ..., resolution; empty means rosinality's table for
    ``channel_multiplier``. ``conv_clamp`` is NVIDIA's activation clamp (None for config-f; 256 in
    stylegan2-ada trainings), kept so their networks compute the same function.
    """

    resolution: int = 1024
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channels: tuple[int, ...] = field(default_factory=tuple)
    lr_mlp: float = 0.01
    blur_kernel: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    conv_clamp: float | None = None

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 4 or r > 1024 or r & (r - 1):
            raise MagecError(f"StyleGAN2 resolution must be a power of two in 4..1024, not {r}")
        if self.channels and len(self.channels) != len(_resolutions(r)):
            raise MagecError(
                f"StyleGAN2 channels: expected {len(_resolutions(r))} entries (4..{r}), got {len(self.channels)}"
            )
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "blur_kernel", tuple(float(k) for k in self.blur_kernel))

    @property
    def log_size(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def n_latent(self) -> int:
        """Number of W+ codes: two per resolution above 4x4, plus the 4x4 conv and its ToRGB."""
        return self.log_size * 2 - 2

    @property
    def num_noise(self) -> int:
        return (self.log_size - 2) * 2 + 1

    def channel_table(self) -> dict[int, int]:
        chans = self.channels or rosinality_channels(self.resolution, self.channel_multiplier)
        return dict(zip(_resolutions(self.resolution), chans))

    def noise_resolutions(self) -> list[int]:
        """Resolution of each noise input, in layer order (4, 8, 8, 16, 16, ...)."""
        return [2 ** ((i + 5) // 2) for i in range(self.num_noise)]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StyleGAN2Config:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("architecture is not a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown architecture fields {unknown}")
        for key in ("channels", "blur_kernel"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)
