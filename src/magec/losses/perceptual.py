"""Perceptual distance: LPIPS (VGG, as in the paper) or a documented offline substitute.

LPIPS's own linear heads ship inside the ``lpips`` package, but its VGG16 backbone weights come from
torchvision's download cache, which cannot be filled at run time here. ``build_perceptual("auto")``
uses LPIPS-VGG when ``vgg16-397923af.pth`` is in that cache, and otherwise says so (a log line, never a
silent swap) and uses ``describer-features``: an LPIPS-style distance (channel-normalised feature
differences, averaged over space, summed over layers) on the describer's own pretrained activations.
The chosen term's ``name`` is recorded in every output's metadata.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from magec.describers.base import Describer
from magec.devices import resolve_device
from magec.errors import MagecError, file_error
from magec.io.checkpoints import read_state_dict
from magec.weights import VGG16_FILE, find_vgg16_weights, torch_cache_dir

log = logging.getLogger("magec")


class PerceptualLoss(nn.Module):
    """Per-image perceptual distance between two image batches in [-1, 1]; ``name`` says which one."""

    name: str = ""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class LPIPSVGG(PerceptualLoss):
    """LPIPS with the VGG backbone, its weights read from ``weights`` (no download)."""

    name = "lpips-vgg"

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        import lpips

        weights = Path(weights)
        # pnet_rand=True builds the backbone without touching the network; we load the weights ourselves.
        self.model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
        state = read_state_dict(weights, "a torchvision VGG16 state_dict")
        backbone = {}
        for name, _ in self.model.net.named_parameters():
            index = name.split(".", 1)[1]  # "slice2.5.weight" -> "5.weight", the torchvision features index
            key = f"features.{index}"
            if key not in state:
                raise file_error(weights, f"expected torchvision VGG16 key {key!r}; is this vgg16-397923af.pth?")
            backbone[name] = state[key]
        self.model.net.load_state_dict(backbone, strict=True)
        self.model.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        size = max(x.shape[-1], 64)  # VGG's 5 pooling stages need at least 32 px; 64 keeps every stage informative
        if x.shape[-1] < 64:
            x = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
            y = nn.functional.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return self.model(x, y, normalize=False).flatten()


class DescriberFeatures(PerceptualLoss):
    """LPIPS-style distance on the describer's activations: sum over layers of mean squared unit-feature differences."""

    name = "describer-features"

    def __init__(self, describer: Describer) -> None:
        super().__init__()
        self.describer = describer
        self._cached_target: torch.Tensor | None = None
        self._cached_version = -1
        self._cached_features: list[torch.Tensor] = []
        with torch.no_grad():
            if not describer.features(torch.zeros(1, 3, 64, 64, device=describer.device)):
                raise MagecError(f"describer {describer.spec} exposes no features for a perceptual loss")

    def _target_features(self, y: torch.Tensor) -> list[torch.Tensor]:
        """Features of the target batch, cached while the same tensor is passed (it is fixed during an inversion)."""
        if self._cached_target is not y or self._cached_version != y._version:
            with torch.no_grad():
                self._cached_features = self.describer.features(y)
            self._cached_target, self._cached_version = y, y._version
        return self._cached_features

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        target = self._target_features(y) if not y.requires_grad else self.describer.features(y)
        for fx, fy in zip(self.describer.features(x), target):
            nx = fx / (fx.square().sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.square().sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + (nx - ny).square().sum(1).flatten(1).mean(1)
        return total


def build_perceptual(
    spec: str = "auto", device: str | torch.device = "auto", describer: Describer | None = None
) -> PerceptualLoss:
    """``auto`` | ``lpips-vgg`` | ``lpips-vgg:PATH`` | ``describer-features``."""
    device = resolve_device(device)
    kind, _, arg = spec.partition(":")
    if kind == "lpips-vgg" or (kind == "auto" and find_vgg16_weights() is not None):
        weights = Path(arg) if arg else find_vgg16_weights()
        if weights is None:
            raise MagecError(
                f"lpips-vgg needs {VGG16_FILE} in {torch_cache_dir()} (torchvision's cache) or lpips-vgg:PATH"
            )
        return LPIPSVGG(weights).to(device)
    if kind in ("auto", "describer-features"):
        if describer is None:
            raise MagecError("the describer-features perceptual loss needs a describer")
        if kind == "auto":
            log.warning(
                "LPIPS VGG16 weights not found at %s: using the offline 'describer-features' perceptual loss instead "
                "(see `magec doctor`)",
                torch_cache_dir() / VGG16_FILE,
            )
        return DescriberFeatures(describer).to(device)
    raise MagecError(f"unknown perceptual loss {spec!r}; use auto, lpips-vgg[:PATH] or describer-features")
