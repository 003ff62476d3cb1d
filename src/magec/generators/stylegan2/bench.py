"""Timing of one StyleGAN2 inversion step, reported by ``magec bench --json`` as ``stylegan2_step_ms``."""

from __future__ import annotations

import torch

from magec.devices import resolve_device
from magec.generators.stylegan2.config import StyleGAN2Config
from magec.generators.stylegan2.model import StyleGAN2Generator
from magec.seeding import generator_for
from magec.timing import median_ms


def stylegan2_step_ms(resolution: int, device: torch.device | str = "auto", repeats: int = 3, seed: int = 0) -> float:
    """Median milliseconds of one W+ inversion step (forward + MSE + backward, batch 1) on config-f random weights.

    One untimed warm-up step precedes ``repeats`` timed ones. Weights are random: the cost does not
    depend on their values, and no download is needed.
    """
    device = resolve_device(device)
    model = StyleGAN2Generator.random(StyleGAN2Config(resolution=resolution), seed=seed).to(device)
    target = torch.zeros(1, 3, resolution, resolution, device=device)
    w = torch.randn(1, model.n_latent, model.style_dim, generator=generator_for(seed)).to(device)
    w.requires_grad_(True)

    def step() -> None:
        w.grad = None
        loss = (model.synthesize(w, "w+") - target).square().mean()
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return float(median_ms(step, repeats=repeats, warmup=1))
