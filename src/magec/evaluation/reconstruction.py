"""Reconstruction metrics of one projection (the paper's Table 1): MSE, LPIPS, steps and wall time.

MSE is measured on pixel values scaled to [0, 1] (images in magec live in [-1, 1]; the [0, 1] scale is
the usual convention for reporting), per image. LPIPS is whatever perceptual distance the pipeline
uses, on images in [-1, 1]; its name goes into the report so numbers are never compared across
different networks by accident.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: A perceptual distance: two image batches in [-1, 1], NCHW -> (B,) distances.
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse01(target: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error on the [0, 1] pixel scale, shape (B,)."""
    diff = (reconstruction.float() - target.float()) / 2.0
    return diff.square().flatten(1).mean(1)


@torch.no_grad()
def perceptual_distance(distance: Distance, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``distance(a, b)`` as a flat (B,) float tensor without gradients."""
    return distance(a, b).float().reshape(a.shape[0], -1).mean(1)


def reconstruction_metrics(
    distance: Distance, target: torch.Tensor, reconstruction: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``{"mse": (B,), "lpips": (B,)}`` between inputs and their reconstructions."""
    return {"mse": mse01(target, reconstruction), "lpips": perceptual_distance(distance, target, reconstruction)}
