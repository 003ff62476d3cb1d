"""Pixel reconstruction loss: per-image mean squared error (the paper's L_2)."""

from __future__ import annotations

import torch


def mse_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each image pair, shape (B,); images in [-1, 1]."""
    return (x - y).square().flatten(1).mean(1)
