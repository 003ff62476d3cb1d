"""Cost of one StyleGAN2 inversion step, reported by ``magec bench --json`` (``stylegan2_step``).

One W+ step is forward + MSE + backward on config-f random weights (the cost does not depend on the weight
values, and nothing is downloaded). Besides time, two memory figures:

- ``saved_bytes``: the tensors autograd keeps for the backward pass (counted once per storage), the part of
  a step's memory that grows with batch and resolution and the one the fused layers cut. It is exact and the
  same on every device, so it also shows the cut on a CPU.
- ``peak_bytes``: on CUDA, the allocator's peak during a step (``torch.cuda.max_memory_allocated``, weights
  included); None on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from magec.devices import resolve_device
from magec.generators.stylegan2.config import StyleGAN2Config
from magec.generators.stylegan2.model import StyleGAN2Generator
from magec.seeding import generator_for
from magec.timing import median_ms


def step_stats(
    resolution: int,
    batch: int = 1,
    device: torch.device | str = "auto",
    repeats: int = 3,
    precision: str = "fp32",
    compile: bool = False,
    fused: bool = True,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """Median milliseconds and memory of one W+ inversion step at ``resolution`` for ``batch`` images.

    ``fused=False`` times the plain layers (the reference the fused ones are tested against);
    ``compile=True`` runs the synthesis through ``torch.compile`` (its compilation is in the warm-up, not timed).
    One untimed warm-up step precedes ``repeats`` timed ones.
    """
    device = resolve_device(device)
    model = StyleGAN2Generator.random(StyleGAN2Config(resolution=resolution), seed=seed).to(device)
    model.fused = fused
    target = torch.zeros(batch, 3, resolution, resolution, device=device)
    w = torch.randn(batch, model.n_latent, model.style_dim, generator=generator_for(seed)).to(device)
    w.requires_grad_(True)
    synthesis: Callable = torch.compile(model.synthesis, dynamic=False) if compile else model.synthesis
    noise = model.fixed_noise()

    def step() -> None:
        w.grad = None
        with model.precision(precision):
            image = synthesis(w, noise)
        (image - target).square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up (and compilation)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ms = float(median_ms(step, repeats=repeats, warmup=0))
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    return {"ms": round(ms, 2), "peak_bytes": peak, "saved_bytes": saved_bytes(model, w, precision)}


def saved_bytes(model: StyleGAN2Generator, w: torch.Tensor, precision: str = "fp32") -> int:
    """Bytes autograd keeps for the backward pass of one synthesis of ``w`` (each storage counted once; the
    model's own parameters and buffers, which exist anyway, are not counted)."""
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), model.precision(precision):
        model.synthesize(w, "w+")
    return sum(storages.values())


def stylegan2_step_ms(resolution: int, device: torch.device | str = "auto", repeats: int = 3, seed: int = 0) -> float:
    """Median milliseconds of one W+ inversion step at batch 1 (``step_stats``' ``ms``)."""
    return float(step_stats(resolution, 1, device, repeats=repeats, seed=seed)["ms"])
