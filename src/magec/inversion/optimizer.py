"""Batched instance-optimisation inversion (paper Sec. 3-4).

B images are inverted in one optimisation: one generator pass per step for the whole batch, losses
summed over images so that each image's gradient is its own, and Adam (elementwise) keeps
independent state per image. The same batches give bit-identical results; other batch sizes solve
the same per-image problems up to floating-point rounding (README, "Batches").

Progress is reported to an optional ``callback`` after every step (``StepInfo``: losses as tensors on
the device, so a callback that does not read them costs no device sync); it may stop the run early.
The loss history stays on the device and is copied to the CPU once, at the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from magec.errors import MagecError
from magec.generators.base import select_noise
from magec.inversion.config import PTI_METHODS, InversionConfig, method_config
from magec.inversion.pti import PTIConfig, pivotal_tuning
from magec.losses.magec_loss import build_magec_loss
from magec.losses.mse import mse_per_image

if TYPE_CHECKING:
    from magec.generators.base import Generator
    from magec.pipeline import Pipeline

log = logging.getLogger("magec")

#: Loss terms, in the order they are recorded.
TERMS = ("total", "mse", "perceptual", "identity", "magec")


@dataclass(frozen=True)
class StepInfo:
    """What ``invert`` tells its callback after each optimisation step."""

    #: 0-based step over the whole schedule, and the schedule's length.
    step: int
    total_steps: int
    #: 1-based phase of the schedule, and what it optimises ("latent" or "noise").
    phase: int
    target: str
    lr: float
    #: Per-image losses of this step, shape (B,), detached, on the pipeline's device: "total" (weighted
    #: sum) and each active term ("mse", "perceptual", "identity", "magec"), unweighted.
    losses: dict[str, torch.Tensor]
    #: The codes after this step (detached; do not modify), e.g. for a live preview.
    latents: torch.Tensor


#: Called after every step; returning True stops the inversion (the result then has ``stopped=True``).
StepCallback = Callable[[StepInfo], bool | None]


@dataclass
class InversionResult:
    """Everything one ``invert`` call produced, for a batch of B images."""

    #: Final codes, (B, *space shape), detached, on the pipeline's device.
    latents: torch.Tensor
    #: The space the codes live in ("z", "w" or "w+").
    space: str
    #: Optimised noise maps (one (B, 1, H, W) tensor per layer), or None when noise was not optimised.
    noise: list[torch.Tensor] | None
    #: The generator's images of the final codes, (B, 3, R, R) in [-1, 1].
    images: torch.Tensor
    #: One entry per step: {"step", "phase", "target", "lr", and per-image lists for "total" and each
    #: active term: "mse", "perceptual", "identity", "magec"} (plain Python numbers, on the CPU).
    history: list[dict] = field(default_factory=list)
    #: Steps actually run (fewer than the schedule's when a callback stopped the run).
    steps: int = 0
    #: Wall time of the optimisation, in seconds, for the whole batch.
    seconds: float = 0.0
    #: The method name ("magec", "no-magec", "im2stylegan++").
    method: str = ""
    #: Things the run adapted and the user should know (a missing space, no noise, no identity network).
    notes: list[str] = field(default_factory=list)
    #: True when a callback asked to stop before the schedule ended.
    stopped: bool = False
    #: For the ``+pti`` methods: one tuned generator per image (``images`` are theirs), else None.
    tuned: list[Generator] | None = None
    #: The editor whose edits the MAGEC term used ("interfacegan" or "styleflow"); "" when the term was off.
    magec_editor: str = ""

    def image_history(self, i: int) -> list[dict]:
        """The per-step losses of image ``i`` alone."""
        return [{k: (v[i] if isinstance(v, list) else v) for k, v in h.items()} for h in self.history]


def _history_to_cpu(steps: list[dict], losses: list[dict[str, torch.Tensor]]) -> list[dict]:
    """Per-step records with their loss tensors moved to the CPU in one copy per term."""
    if not steps:
        return []
    history = [dict(s) for s in steps]
    for term in TERMS:
        rows = [i for i, step_losses in enumerate(losses) if term in step_losses]
        if not rows:
            continue
        values = torch.stack([losses[i][term] for i in rows]).cpu().tolist()
        for i, value in zip(rows, values):
            history[i][term] = value
    return history


def invert(
    pipeline: Pipeline,
    images: torch.Tensor,
    method: str = "magec",
    config: InversionConfig | None = None,
    seed: int = 0,
    callback: StepCallback | None = None,
    pti: PTIConfig | None = None,
    initial_noise: list[torch.Tensor] | None = None,
) -> InversionResult:
    """Invert images (B, 3, R, R) in [-1, 1] with ``method`` (magec | no-magec | im2stylegan++).

    ``config`` defaults to the method's paper schedule; ``seed`` seeds the initial noise maps;
    ``callback`` (e.g. ``magec.inversion.ProgressBar``) sees every step and may stop the run.
    ``magec+pti`` / ``no-magec+pti`` then tune one generator per image around its latent (``pti``,
    default: PTI's published settings); their steps are reported with ``target="generator"``.
    ``initial_noise`` replaces ``make_noise(B, seed)`` as the starting noise maps (rows of a larger batch's
    maps, so that a batch split in chunks starts each image from the same maps).
    """
    config = config or method_config(method)
    known = pipeline.pack.layout.attribute_names
    unknown = [a for a in config.attributes or () if a not in known]
    if unknown:  # before any work: a 2-vs-all study must not silently run on all attributes
        raise MagecError(f"--attributes: {', '.join(unknown)} not among the pack's attributes ({', '.join(known)})")
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
        magec = build_magec_loss(
            pipeline.pack,
            config.magec_editor,
            config.edit_amount,
            list(config.attributes) if config.attributes else None,
        ).to(device)
        with torch.no_grad():
            # d = F(x) is a label (no gradient): the describer's aligned-chip path when it has one.
            labeller = getattr(pipeline.describer, "describe_labels", None)
            descriptor = labeller(target_images)[0] if labeller is not None else pipeline.describer(target_images)
            edited = magec.targets(descriptor)
    if pipeline.identity is None and any(p.identity > 0 for p in config.phases):
        notes.append("identity loss off: no identity network configured")

    noise: list[torch.Tensor] | None = None
    if any(p.target == "noise" for p in config.phases):
        if gen.has_noise:
            start_noise = gen.make_noise(batch, seed) if initial_noise is None else initial_noise
            noise = [n.detach().to(device).clone().requires_grad_(True) for n in start_noise]
        else:
            notes.append(f"{gen.spec} has no noise inputs: the noise phase is skipped")
    for note in notes:
        log.info(note)

    pti = pti or PTIConfig()
    reported_total = config.total_steps + (batch * pti.steps if method in PTI_METHODS else 0)
    steps: list[dict] = []
    losses: list[dict[str, torch.Tensor]] = []
    optimizers: dict[str, torch.optim.Optimizer] = {}
    step = 0
    stopped = False
    started = time.perf_counter()
    for phase_index, phase in enumerate(config.phases):
        if stopped:
            break
        if phase.target == "noise" and noise is None:
            continue
        params = [latents] if phase.target == "latent" else noise
        optimizer = optimizers.get(phase.target)
        if optimizer is None:  # one Adam per target, kept across phases (the paper's lr schedule is global)
            optimizer = optimizers[phase.target] = torch.optim.Adam(
                params, lr=config.lr, betas=config.betas, eps=config.eps
            )
        id_weight = phase.identity * (pipeline.identity.weight_scale if pipeline.identity is not None else 1.0)
        weights = {"mse": phase.mse, "perceptual": phase.perceptual, "identity": id_weight, "magec": phase.magec}
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
            total = sum(weights[k] * v for k, v in terms.items())
            total.sum().backward()
            optimizer.step()
            step_losses = {"total": total.detach(), **{k: v.detach() for k, v in terms.items()}}
            steps.append({"step": step, "phase": phase_index + 1, "target": phase.target, "lr": lr})
            losses.append(step_losses)
            step += 1
            if callback is not None:
                info = StepInfo(
                    step - 1, reported_total, phase_index + 1, phase.target, lr, step_losses, latents.detach()
                )
                if callback(info):
                    stopped = True
                    notes.append(f"stopped by the callback after {step} of {config.total_steps} steps")
                    break
    tuned = None
    if method in PTI_METHODS and not stopped:
        tuned = _tune(pipeline, target_images, latents.detach(), space, noise, pti, seed, callback, step, config)
    with torch.no_grad():
        if tuned is None:
            final = gen.synthesize(latents, space=space, noise=noise)
        else:
            final = torch.cat(
                [
                    g.synthesize(latents[i : i + 1], space=space, noise=select_noise(noise, i))
                    for i, g in enumerate(tuned)
                ]
            )
    return InversionResult(
        latents=latents.detach(),
        space=space,
        noise=[n.detach() for n in noise] if noise is not None else None,
        images=final.detach(),
        history=_history_to_cpu(steps, losses),
        steps=step,
        seconds=time.perf_counter() - started,
        method=method,
        notes=notes,
        stopped=stopped,
        tuned=tuned,
        magec_editor=config.magec_editor if uses_magec else "",
    )


def _tune(
    pipeline: Pipeline,
    images: torch.Tensor,
    latents: torch.Tensor,
    space: str,
    noise: list[torch.Tensor] | None,
    pti: PTIConfig,
    seed: int,
    callback: StepCallback | None,
    done_steps: int,
    config: InversionConfig,
) -> list[Generator]:
    """Pivotal tuning after the latent phases, reporting its steps to the inversion's callback."""
    batch = images.shape[0]
    total = config.total_steps + batch * pti.steps
    phase = len(config.phases) + 1  # the tuning is reported as one more phase

    def report(i: int, step: int, loss: float) -> bool | None:
        if callback is None:
            return None
        losses = {"total": torch.full((batch,), float("nan"), device=images.device)}
        losses["total"][i] = loss
        info = StepInfo(done_steps + i * pti.steps + step, total, phase, "generator", pti.lr, losses, latents)
        return callback(info)

    return pivotal_tuning(pipeline, images, latents, space, noise, pti, seed, report if callback else None)
