"""A tiny, fast stand-in for magec.pipeline.Pipeline, used by the evaluation tests.

Generator: 4-d latent -> 8x8 RGB through a fixed random linear map and tanh. Describer: a binary
"male" head and an "age" head (3 classes, values 20/40/60) read off mean colours. Editors follow the
LatentEditor contract. The fake inversion is seeded gradient descent on pixel MSE.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

from magec.describers.base import Attribute, Describer, DescriptorLayout, Head
from magec.generators.base import Generator, LatentSpace
from magec.latent.kinds import INTERPOLATE, EditorTraits, editor_traits
from magec.seeding import generator_for, randn


class TinyGenerator(Generator):
    spec = "tiny"

    def __init__(self) -> None:
        super().__init__()
        self.resolution = 8
        self.spaces = {"z": LatentSpace("z", (4,))}
        self.weight = nn.Parameter(torch.randn(4, 3 * 64, generator=generator_for(11)) * 0.6, requires_grad=False)

    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        return randn((n, 4), seed)

    def synthesize(self, latents, space=None, noise=None):
        return torch.tanh(latents @ self.weight).view(-1, 3, 8, 8)

    def initial_latent(self) -> torch.Tensor:
        return torch.full((4,), 0.1)


class TinyDescriber(Describer):
    spec = "tiny-describer"

    def __init__(self) -> None:
        super().__init__()
        self.layout = DescriptorLayout(
            (Head("male", "binary", 1), Head("age", "categorical", 3, (20.0, 40.0, 60.0))),
            (Attribute("male", "male", "binary"), Attribute("age", "age", "continuous")),
        )

    def forward(self, images):
        m = images.mean(dim=(2, 3))
        logits = torch.stack([4 * m[:, 0], 3 * m[:, 1], torch.zeros_like(m[:, 1]), 3 * m[:, 2]], dim=1)
        return self.layout.probabilities(logits)


@dataclass
class LinearEditor:
    kind: str
    directions: dict
    default_amount: float = 1.5

    @property
    def traits(self) -> EditorTraits:
        return editor_traits(self.kind)

    def operations(self):
        return list(self.directions)

    def edit(self, latents, operation, amount):
        return latents + amount * self.directions[operation].to(latents)


@dataclass
class InterpolateEditor:
    generator: TinyGenerator
    kind: str = "interpolate"
    default_amount: float = 0.5
    traits = INTERPOLATE

    def operations(self):
        return []

    def edit(self, latents, operation, amount):
        target = self.generator.sample_latents(1, int(operation.split(":", 1)[1]))
        return (1 - amount) * latents + amount * target


class L1Perceptual:
    name = "fake-l1"

    def __call__(self, x, y):
        return (x - y).abs().flatten(1).mean(1)


def make_pipeline():
    gen = TinyGenerator()
    eye = torch.eye(4)
    pack_editors = {
        "interfacegan": LinearEditor("interfacegan", {"male": eye[0], "age": eye[1]}),
        "ganspace": LinearEditor("ganspace", {f"pc{i}": eye[i] for i in range(4)}, 1.0),
    }
    return SimpleNamespace(
        generator=gen,
        describer=TinyDescriber(),
        pack=SimpleNamespace(editors=pack_editors),
        editors={**pack_editors, "interpolate": InterpolateEditor(gen)},  # as a Pipeline: its own mapping
        perceptual=L1Perceptual(),
        identity=None,
        device=torch.device("cpu"),
    )


def fake_invert(pipeline, images, method="magec", config=None, seed=0, callback=None):
    """Seeded gradient descent on MSE; 'no-magec' takes fewer steps so methods differ."""
    start = time.perf_counter()
    steps = {"magec": 40, "no-magec": 20, "im2stylegan++": 60}.get(method, 30)
    z = (
        pipeline.generator.initial_latent()[None].repeat(images.shape[0], 1) + 0.01 * randn((images.shape[0], 4), seed)
    ).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        loss = (pipeline.generator.synthesize(z) - images).square().mean()
        loss.backward()
        opt.step()
    z = z.detach()
    return SimpleNamespace(
        latents=z,
        space="z",
        noise=None,
        images=pipeline.generator.synthesize(z),
        history=[],
        steps=steps,
        seconds=time.perf_counter() - start,
    )


def pixel_features():
    from magec.evaluation.realism import FeatureNetwork

    return FeatureNetwork("flattened pixels (test)", lambda x: x.flatten(1))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Tiny tensors run ~100x faster on one thread than on two busy cores (thread hand-off dominates)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
