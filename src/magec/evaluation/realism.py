"""Realism score of Kynkaanniemi et al. 2019 ("Improved precision and recall metric", Sec. 5).

Reference (real) feature vectors phi_r each get a radius: the distance to their k-th nearest other
reference vector (k = 3). The reference samples whose radius is above the median are dropped (their
hyperspheres are outliers that would make anything look realistic). An evaluated vector phi_g scores

    R(phi_g) = max over kept phi_r of  radius(phi_r) / ||phi_g - phi_r||,

so R >= 1 exactly when phi_g lies inside one of the kept hyperspheres; the paper's realism threshold is 1.

Features: VGG16 fc2 activations (torchvision architecture) when VGG16 ImageNet weights are on disk,
as in the original metric; otherwise a documented fallback (the describer's own features, else a
fixed-seed random-init VGG16 convolutional trunk). The report names the network actually used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from magec.io.checkpoints import read_state_dict, strict_load
from magec.io.images import IMAGENET_MEAN, IMAGENET_STD
from magec.weights import find_vgg16_weights


@dataclass(frozen=True)
class RealismConfig:
    """The original metric's settings: k = 3 neighbours, radii above the 50th percentile dropped."""

    k: int = 3
    keep_percentile: float = 50.0
    eps: float = 1e-12


@dataclass
class ReferenceManifold:
    """Kept reference features and their k-NN radii (the approximate manifold of real data)."""

    features: torch.Tensor  # (M, D)
    radii: torch.Tensor  # (M,)
    size: int  # reference samples before pruning


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest *other* row, shape (N,)."""
    n = features.shape[0]
    if n <= k:
        raise ValueError(f"the realism score needs more than k={k} reference samples, got {n}")
    d = torch.cdist(features.double(), features.double())
    d.fill_diagonal_(float("inf"))
    return d.kthvalue(k, dim=1).values.to(features.dtype)


def build_manifold(features: torch.Tensor, config: RealismConfig = RealismConfig()) -> ReferenceManifold:
    """Radii of the reference set, keeping the samples whose radius is at most the chosen percentile."""
    radii = knn_radii(features, config.k)
    limit = torch.quantile(radii.double(), config.keep_percentile / 100.0).to(radii.dtype)
    keep = radii <= limit
    return ReferenceManifold(features[keep], radii[keep], int(features.shape[0]))


def realism_score(manifold: ReferenceManifold, features: torch.Tensor, eps: float = RealismConfig.eps) -> torch.Tensor:
    """R(phi_g) for each row of ``features`` (B, D), shape (B,); above 1 means inside the real manifold."""
    d = torch.cdist(features.double(), manifold.features.double())
    ratio = manifold.radii.double()[None, :] / (d + eps)
    return ratio.max(dim=1).values.to(torch.float64)


# ---- feature networks ------------------------------------------------------------------------------


class FeatureNetwork(nn.Module):
    """images in [-1, 1] NCHW -> (B, D) feature vectors, with a ``name`` recorded in reports."""

    def __init__(
        self, name: str, fn: Callable[[torch.Tensor], torch.Tensor], modules: list[nn.Module] | None = None
    ) -> None:
        super().__init__()
        self.name = name
        self._fn = fn
        self.parts = nn.ModuleList(modules or [])

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._fn(images).float()


def _imagenet_input(images: torch.Tensor, size: int) -> torch.Tensor:
    x = (images.float() + 1.0) / 2.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _pooled_blocks(maps: list[torch.Tensor]) -> torch.Tensor:
    """Mean-pool each activation map, normalise each block to unit length, concatenate."""
    parts = []
    for m in maps:
        v = m.float().mean(dim=(-2, -1)) if m.dim() == 4 else m.float().flatten(1)
        parts.append(F.normalize(v, dim=1))
    return torch.cat(parts, dim=1)


def vgg16_fc2(weights: str | Path, device: torch.device | str = "cpu", size: int = 224) -> FeatureNetwork:
    """VGG16 fc2 activations (after ReLU), as in the original metric, from an ImageNet state_dict file."""
    from torchvision.models import vgg16

    net = vgg16(weights=None)
    strict_load(net, read_state_dict(weights, "a torchvision VGG16 state_dict"), weights, "torchvision VGG16")
    net.eval().requires_grad_(False).to(device)
    head = net.classifier[:5]  # fc1, relu, dropout (off in eval), fc2, relu

    def fn(images: torch.Tensor) -> torch.Tensor:
        x = net.avgpool(net.features(_imagenet_input(images, size).to(device)))
        return head(torch.flatten(x, 1))

    return FeatureNetwork("VGG16 fc2 (ImageNet weights)", fn, [net])


def random_vgg16_trunk(device: torch.device | str = "cpu", seed: int = 0, size: int | None = None) -> FeatureNetwork:
    """Fallback: a fixed-seed random-init VGG16 conv trunk; pooled, normalised activations of its 5 blocks.

    Random convolutional features still separate image statistics (texture, colour, layout) and are
    reproducible anywhere, but they are not the metric's trained VGG16: scores are comparable between
    methods of one run, not with the paper's absolute numbers.
    """
    from torchvision.models import vgg16

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trunk = vgg16(weights=None).features
    trunk.eval().requires_grad_(False).to(device)

    def fn(images: torch.Tensor) -> torch.Tensor:
        x = _imagenet_input(images, size or max(images.shape[-1], 32)).to(device)  # 5 poolings need >= 32 px
        maps = []
        for layer in trunk:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                maps.append(x)
        return _pooled_blocks(maps)

    return FeatureNetwork(f"random-init VGG16 conv trunk (seed {seed}; no VGG16 weights on disk)", fn, [trunk])


def describer_features(describer: nn.Module, spec: str) -> FeatureNetwork:
    """Fallback: the describer's own intermediate activations, pooled and normalised per block."""

    def fn(images: torch.Tensor) -> torch.Tensor:
        return _pooled_blocks(describer.features(images))

    return FeatureNetwork(f"describer {spec} features (no VGG16 weights on disk)", fn, [describer])


def realism_features(
    describer: nn.Module | None = None, device: torch.device | str = "cpu", seed: int = 0
) -> FeatureNetwork:
    """The best available feature space: VGG16 fc2, else the describer's features, else a random VGG16 trunk."""
    weights = find_vgg16_weights()
    if weights is not None:
        return vgg16_fc2(weights, device)
    if describer is not None:
        with torch.no_grad():
            probe = describer.features(torch.zeros(1, 3, 64, 64, device=device))
        if probe:
            return describer_features(describer, getattr(describer, "spec", "") or type(describer).__name__)
    return random_vgg16_trunk(device, seed)
