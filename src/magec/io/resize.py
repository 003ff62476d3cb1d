"""Differentiable resizing of image batches for networks with a fixed input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def center_square_batch(images: torch.Tensor) -> torch.Tensor:
    """Crop the largest centred square of (B, C, H, W) images (no-op for square inputs)."""
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return images[..., top : top + side, left : left + side]


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (B, C, H, W) to ``size`` x ``size``: area pooling to shrink (as pSp does), else antialiased bilinear."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    if h >= size and w >= size:
        return F.adaptive_avg_pool2d(images, (size, size))
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
