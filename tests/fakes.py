"""Small, fast stand-ins used by unit tests (the real describers are tested on their own)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from magec.describers.base import Attribute, Describer, DescriptorLayout, Head

LEVELS = (0.0, 1.0, 2.0, 3.0, 4.0)


class ToneDescriber(Describer):
    """A differentiable toy F: 'bright' (binary head on mean luminance) and 'redness' (5 ordered classes)."""

    spec = "fake-tone"

    def __init__(self) -> None:
        super().__init__()
        self.layout = DescriptorLayout(
            heads=(Head("bright", "binary", 1), Head("redness", "categorical", 5, LEVELS)),
            attributes=(Attribute("bright", "bright", "binary"), Attribute("redness", "redness", "continuous")),
        )
        self.register_buffer("centers", torch.linspace(-0.3, 0.3, 5))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        luminance = images.mean(dim=(1, 2, 3))
        red = (images[:, 0] - images[:, 1:].mean(1)).mean(dim=(1, 2))
        bright = torch.sigmoid(20 * (luminance + 0.35))[:, None]
        redness = (-(red[:, None] - self.centers).square() / 0.01).softmax(-1)
        return torch.cat([bright, redness], dim=1)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [F.avg_pool2d(images, 4), F.avg_pool2d(images, 8)]
