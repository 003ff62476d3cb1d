"""Seeded random sources: every random choice in magec takes an explicit seed."""

from __future__ import annotations

import torch


def generator_for(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``; sample on CPU then move, so results match across devices."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def randn(shape: tuple[int, ...], seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal samples that depend only on ``seed`` and ``shape`` (not on the device)."""
    return torch.randn(shape, generator=generator_for(seed)).to(device)
