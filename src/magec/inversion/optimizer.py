"""Batched instance-optimisation inversion (paper Sec. 3-4).

B images are inverted in one optimisation: one generator pass per step for the whole batch, losses
summed over images so that each image's gradient is its own, and Adam (elementwise) keeps
independent state per image. Results equal one-at-a-time inversion up to floating-point rounding.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from magec.inversion.config import InversionConfig, method_config
from magec.losses.magec_loss import MagecLoss
from magec.losses.mse import mse_per_image

log = logging.getLogger("magec")


@dataclass
class InversionResult:
    latents: torch.Tensor
    space: str
    noise: list[torch.Tensor] | None
    images: torch.Tensor
    #: One entry per step: {"step", "phase", "target", "lr", and per-image lists "total", "mse", "perceptual", "identity", "magec"}.
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    method: str = ""
    notes: list[str] = field(default_factory=list)

    def image_history(self, i: int) -> list[dict]:
        """The per-step losses of image ``i`` alone."""
        return [{k: (v[i] if isinstance(v, list) else v) for k, v in h.items()} for h in self.history]


def invert(
    pipeline,
    images: torch.Tensor,
    method: str = "magec",
    config: InversionConfig | None = None,
    progress: bool = True,
    seed: int = 0,
) -> InversionResult:
    """Invert images (B, 3, R, R) in [-1, 1] with ``method`` (magec | no-magec | im2stylegan++)."""
    config = config or method_config(method)
    gen, device = pipeline.generator, pipeline.device
    target_images = images.to(device)
    batch = target_images.shape[0]
    notes: list[str] = []

    space = config.space or gen.editing_space.name
    if space not in gen.spaces:
        notes.append(f"{gen.spec} has no {space!r} space: optimising {gen.editing_space.name!r} instead")
        space = gen.editing_space.name
    start = gen.convert_latents(gen.initial_latent()[None], gen.editing_space.name, space)
    latents = start.repeat(batch, *[1] * (start.dim() - 1)).detach().clone().requires_grad_(True)

    uses_magec = any(p.magec > 0 for p in config.phases)
    magec = descriptor = edited = None
    if uses_magec:
        if space != gen.editing_space.name:
            raise ValueError(
                f"the MAGEC loss needs codes in the editing space {gen.editing_space.name!r}, not {space!r}"
            )
        magec = MagecLoss(
            pipeline.pack.linknet,
            pipeline.pack.interfacegan,
            config.edit_amount,
            list(config.attributes) if config.attributes else None,
        ).to(device)
        with torch.no_grad():
            descriptor = pipeline.describer(target_images)
            edited = magec.targets(descriptor)
    if pipeline.identity is None and any(p.identity > 0 for p in config.phases):
        notes.append("identity loss off: no identity network configured")

    noise: list[torch.Tensor] | None = None
    if any(p.target == "noise" for p in config.phases):
        if gen.has_noise:
            noise = [n.detach().clone().requires_grad_(True) for n in gen.make_noise(batch, seed)]
        else:
            notes.append(f"{gen.spec} has no noise inputs: the noise phase is skipped")
    for note in notes:
        log.info(note)

    history: list[dict] = []
    optimizers: dict[str, torch.optim.Optimizer] = {}
    step = 0
    started = time.perf_counter()
    bar = tqdm(total=config.total_steps, desc=f"invert [{method}] x{batch}", disable=not progress, leave=False)
    for phase_index, phase in enumerate(config.phases):
        if phase.target == "noise" and noise is None:
            bar.update(phase.steps)
            continue
        params = [latents] if phase.target == "latent" else noise
        optimizer = optimizers.get(phase.target)
        if optimizer is None:  # one Adam per target, kept across phases (the paper's lr schedule is global)
            optimizer = optimizers[phase.target] = torch.optim.Adam(
                params, lr=config.lr, betas=config.betas, eps=config.eps
            )
        for _ in range(phase.steps):
            lr = config.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            generated = gen.synthesize(latents, space=space, noise=noise)
            terms = {"mse": mse_per_image(generated, target_images)}
            if phase.perceptual:
                terms["perceptual"] = pipeline.perceptual(generated, target_images)
            if phase.identity and pipeline.identity is not None:
                terms["identity"] = pipeline.identity(generated, target_images)
            if phase.magec and magec is not None:
                terms["magec"] = magec(latents.flatten(1), descriptor, edited)
            weights = {
                "mse": phase.mse,
                "perceptual": phase.perceptual,
                "identity": phase.identity,
                "magec": phase.magec,
            }
            total = sum(weights[k] * v for k, v in terms.items())
            total.sum().backward()
            optimizer.step()
            record = {
                "step": step,
                "phase": phase_index + 1,
                "target": phase.target,
                "lr": lr,
                "total": total.detach().cpu().tolist(),
            }
            record |= {k: v.detach().cpu().tolist() for k, v in terms.items()}
            history.append(record)
            step += 1
            bar.update(1)
            if progress and step % 10 == 0:
                bar.set_postfix(loss=f"{total.mean().item():.4f}")
    bar.close()
    with torch.no_grad():
        final = gen.synthesize(latents, space=space, noise=noise)
    return InversionResult(
        latents=latents.detach(),
        space=space,
        noise=[n.detach() for n in noise] if noise is not None else None,
        images=final.detach(),
        history=history,
        steps=step,
        seconds=time.perf_counter() - started,
        method=method,
        notes=notes,
    )
