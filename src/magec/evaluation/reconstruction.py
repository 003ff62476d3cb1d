"""Reconstruction metrics of one projection (the paper's Table 1): MSE, LPIPS, steps and wall time.

MSE is measured on pixel values scaled to [0, 1] (images in magec live in [-1, 1]; the [0, 1] scale is
the usual convention for reporting), per image. LPIPS is whatever perceptual distance the pipeline
uses, on images in [-1, 1]; its name goes into the report so numbers are never compared across
different networks by accident.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from magec.memory import chunk_size, map_chunks, network_bytes

#: A perceptual distance: two image batches in [-1, 1], NCHW -> (B,) distances.
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse01(target: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error on the [0, 1] pixel scale, shape (B,)."""
    diff = (reconstruction.float() - target.float()) / 2.0
    return diff.square().flatten(1).mean(1)


@torch.no_grad()
def perceptual_distance(distance: Distance, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``distance(a, b)`` as a flat (B,) float tensor without gradients.

    Pairs are measured in chunks sized from the memory budget (``magec.memory``; split again on
    out-of-memory): 42 ECS pairs of 1024-px images through VGG at once would need tens of GB."""
    size = chunk_size(2 * network_bytes(a.shape[-1]), a.device).size

    def part(start: int, stop: int) -> torch.Tensor:
        return distance(a[start:stop], b[start:stop]).float().reshape(stop - start, -1).mean(1)

    return torch.cat(map_chunks(part, a.shape[0], size, device=a.device, resolution=a.shape[-1]))


def reconstruction_metrics(
    distance: Distance, target: torch.Tensor, reconstruction: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``{"mse": (B,), "lpips": (B,)}`` between inputs and their reconstructions."""
    return {"mse": mse01(target, reconstruction), "lpips": perceptual_distance(distance, target, reconstruction)}
