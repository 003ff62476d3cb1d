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
from magec.inversion.config import PTI_METHODS, InversionConfig, method_config, needs_encoder
from magec.inversion.projection import Projection
from magec.inversion.pti import PTIConfig, pivotal_tuning
from magec.losses.magec_loss import build_magec_loss
from magec.losses.mse import mse_per_image

if TYPE_CHECKING:
    from magec.encoders.base import Encoder
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
    #: The codes the optimisation started from (B, *space shape), detached: the generator's mean, the encoder's
    #: codes, or ``init``; for the ``encoder`` method these are ``latents``.
    start: torch.Tensor | None = None
    #: Where they came from: "mean", "init" (given to ``invert``) or the encoder's spec (e.g. "magec-encoder").
    start_from: str = "mean"

    def image_history(self, i: int) -> list[dict]:
        """The per-step losses of image ``i`` alone."""
        return [{k: (v[i] if isinstance(v, list) else v) for k, v in h.items()} for h in self.history]

    def projection(self, i: int, source: torch.Tensor | None = None) -> Projection:
        """Image ``i``'s record: its code, noise maps and tuned generator (``source``: the image, (1, 3, R, R))."""
        tuned = self.tuned[i] if self.tuned is not None else None
        noise = select_noise(self.noise, i)
        return Projection(self.method, self.latents[i : i + 1], self.space, noise, source, self.steps, self.seconds,
                          self.stopped, list(self.notes), tuned)  # fmt: skip


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
    init: torch.Tensor | None = None,
) -> InversionResult:
    """Invert images (B, 3, R, R) in [-1, 1] with ``method`` (magec | no-magec | im2stylegan++).

    ``config`` defaults to the method's paper schedule; ``seed`` seeds the initial noise maps;
    ``callback`` (e.g. ``magec.inversion.ProgressBar``) sees every step and may stop the run.
    ``magec+pti`` / ``no-magec+pti`` then tune one generator per image around its latent (``pti``,
    default: PTI's published settings); their steps are reported with ``target="generator"``.
    ``initial_noise`` replaces ``make_noise(B, seed)`` as the starting noise maps (rows of a larger batch's
    maps, so that a batch split in chunks starts each image from the same maps).
    ``init`` (B, *shape) replaces the start: codes in the space the method optimises (the editing space, or W+
    for a generator that has it, e.g. e4e's codes; the MAGEC term then reads the mean of the W+ rows). Without
    it, the ``encoder`` methods start from ``pipeline.encoder``'s codes, the others from the generator's mean.
    The ``encoder`` method returns the start itself, with no optimisation step.
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

    started = time.perf_counter()  # an encoder's forward pass is part of the method's time
    latents, space, start_from = _start_codes(pipeline, method, config, target_images, init, notes)
    start_codes = latents.detach().clone()
    magec_term = _magec_term(pipeline, config, space, target_images)
    if pipeline.identity is None and any(p.identity > 0 for p in config.phases):
        notes.append("identity loss off: no identity network configured")
    noise = _start_noise(pipeline, config, batch, seed, initial_noise, notes)
    for note in notes:
        log.info(note)

    pti = pti or PTIConfig()
    reported_total = config.total_steps + (batch * pti.steps if method in PTI_METHODS else 0)
    steps, losses, stopped = _optimise(
        pipeline, config, target_images, latents, space, noise, magec_term, callback, reported_total, notes
    )
    step = len(steps)
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
    seconds = time.perf_counter() - started
    history = _history_to_cpu(steps, losses)
    if not config.phases:  # the start alone (the ``encoder`` method): its losses, as one entry
        history = [_start_entry(pipeline, final, target_images)]
    return InversionResult(
        latents=latents.detach(),
        space=space,
        noise=[n.detach() for n in noise] if noise is not None else None,
        images=final.detach(),
        history=history,
        steps=step,
        seconds=seconds,
        method=method,
        notes=notes,
        stopped=stopped,
        tuned=tuned,
        magec_editor=config.magec_editor if magec_term is not None else "",
        start=start_codes,
        start_from=start_from,
    )


#: The MAGEC loss of a run, with the descriptor d = F(x) of its images and the edited targets of Eq. 2.
_MagecTerm = tuple[torch.nn.Module, torch.Tensor, torch.Tensor]


def _start_codes(
    pipeline: Pipeline,
    method: str,
    config: InversionConfig,
    target_images: torch.Tensor,
    init: torch.Tensor | None,
    notes: list[str],
) -> tuple[torch.Tensor, str, str]:
    """The codes the optimisation starts from (requiring grad), the space they live in, and where they came from
    (``mean``, ``init``, or the encoder's spec)."""
    gen, device, batch = pipeline.generator, pipeline.device, target_images.shape[0]
    space = config.space or gen.editing_space.name
    if space not in gen.spaces:
        notes.append(f"{gen.spec} has no {space!r} space: optimising {gen.editing_space.name!r} instead")
        space = gen.editing_space.name
    start_from = "mean"
    if init is None and (config.start == "encoder" or needs_encoder(method)):
        encoder = require_encoder(pipeline, method)
        init, start_from = encoder.encode(target_images, batch_size=max(1, batch)).to(device), encoder.spec
    elif init is not None:
        start_from = "init"
    if init is not None:
        space = start_space(gen, init, batch, config.space and space, "init" if start_from == "init" else start_from)
        latents = init.detach().to(device=device, dtype=torch.float32).clone().requires_grad_(True)
    else:
        start = gen.convert_latents(gen.initial_latent()[None], gen.editing_space.name, space)
        latents = start.repeat(batch, *[1] * (start.dim() - 1)).detach().clone().requires_grad_(True)
    return latents, space, start_from


def _magec_term(
    pipeline: Pipeline, config: InversionConfig, space: str, target_images: torch.Tensor
) -> _MagecTerm | None:
    """The MAGEC loss and its targets when a phase weighs it, else None."""
    if not any(p.magec > 0 for p in config.phases):
        return None
    gen = pipeline.generator
    if space != gen.editing_space.name and not _rows_of_editing_space(gen, space):
        raise ValueError(f"the MAGEC loss needs codes in the editing space {gen.editing_space.name!r}, not {space!r}")
    magec = build_magec_loss(
        pipeline.pack,
        config.magec_editor,
        config.edit_amount,
        list(config.attributes) if config.attributes else None,
    ).to(pipeline.device)
    with torch.no_grad():
        # d = F(x) is a label (no gradient): the describer's aligned-chip path when it has one.
        labeller = getattr(pipeline.describer, "describe_labels", None)
        descriptor = labeller(target_images)[0] if labeller is not None else pipeline.describer(target_images)
        edited = magec.targets(descriptor)
    return magec, descriptor, edited


def _start_noise(
    pipeline: Pipeline,
    config: InversionConfig,
    batch: int,
    seed: int,
    initial_noise: list[torch.Tensor] | None,
    notes: list[str],
) -> list[torch.Tensor] | None:
    """The noise maps a noise phase optimises (requiring grad), or None when no phase does or the generator has none."""
    if not any(p.target == "noise" for p in config.phases):
        return None
    gen = pipeline.generator
    if not gen.has_noise:
        notes.append(f"{gen.spec} has no noise inputs: the noise phase is skipped")
        return None
    start_noise = gen.make_noise(batch, seed) if initial_noise is None else initial_noise
    return [n.detach().to(pipeline.device).clone().requires_grad_(True) for n in start_noise]


def _optimise(
    pipeline: Pipeline,
    config: InversionConfig,
    target_images: torch.Tensor,
    latents: torch.Tensor,
    space: str,
    noise: list[torch.Tensor] | None,
    magec_term: _MagecTerm | None,
    callback: StepCallback | None,
    reported_total: int,
    notes: list[str],
) -> tuple[list[dict], list[dict[str, torch.Tensor]], bool]:
    """The phases of ``config``, in place on ``latents`` / ``noise``: each step's record and losses (on the device),
    and whether the callback stopped the run."""
    gen = pipeline.generator
    steps: list[dict] = []
    losses: list[dict[str, torch.Tensor]] = []
    optimizers: dict[str, torch.optim.Optimizer] = {}
    step = 0
    for phase_index, phase in enumerate(config.phases):
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
            if phase.magec and magec_term is not None:
                magec, descriptor, edited = magec_term
                terms["magec"] = magec(_magec_codes(latents, gen, space), descriptor, edited)
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
                    notes.append(f"stopped by the callback after {step} of {config.total_steps} steps")
                    return steps, losses, True
    return steps, losses, False


def require_encoder(pipeline: Pipeline, method: str = "encoder") -> Encoder:
    """``pipeline.encoder``, checked against the generator; without one, a one-line error saying how to get one."""
    encoder = getattr(pipeline, "encoder", None)
    if encoder is None:
        raise MagecError(
            f"--method {method} starts from an encoder, and this pipeline has none: `magec prepare` makes the "
            "pack's own (or `magec train-encoder --pack PACK --out ENC.safetensors`), or give one with "
            "--init ENC.safetensors / --init e4e:PATH (Python: Pipeline.encoder)"
        )
    encoder.check_generator(pipeline.generator)
    return encoder


def start_space(gen: Generator, init: torch.Tensor, batch: int, space: str | None = None, what: str = "init") -> str:
    """The space start codes ``init`` live in (``space`` when the method fixes one; else the editing space, or W+
    where the generator has it), refusing in one line codes of another shape or with NaN/infinite values;
    ``what`` names where they came from in that line (``init``, or the encoder)."""
    if not isinstance(init, torch.Tensor) or not init.is_floating_point():
        got = init.dtype if isinstance(init, torch.Tensor) else type(init).__name__
        raise MagecError(f"{what}: expected a floating-point tensor of start codes, got {got}")
    candidates = [space] if space else [gen.editing_space.name, *(["w+"] if "w+" in gen.spaces else [])]
    for name in candidates:
        if tuple(init.shape) == (batch, *gen.spaces[name].shape):
            if not bool(torch.isfinite(init).all()):
                raise MagecError(f"{what}: the start codes hold NaN or infinite values")
            return name
    expected = " or ".join(f"{(batch, *gen.spaces[n].shape)} ({n})" for n in candidates)
    raise MagecError(f"{what}: start codes of shape {tuple(init.shape)} do not fit {gen.spec}: expected {expected}")


def _rows_of_editing_space(gen: Generator, space: str) -> bool:
    """Are codes of ``space`` per-layer rows of editing-space codes (W+ of a W editing space)?"""
    shape, editing = tuple(gen.spaces[space].shape), tuple(gen.editing_space.shape)
    return len(shape) == 2 and shape[1:] == editing


def _magec_codes(latents: torch.Tensor, gen: Generator, space: str) -> torch.Tensor:
    """What LinkNet reads: the codes themselves in the editing space, the mean of the rows for W+ codes (an
    InterfaceGAN edit added to every row moves that mean by the same edit, so Eq. 2 keeps its meaning)."""
    if space != gen.editing_space.name and _rows_of_editing_space(gen, space):
        return latents.mean(1)
    return latents.flatten(1)


@torch.no_grad()
def _start_entry(pipeline: Pipeline, images: torch.Tensor, targets: torch.Tensor) -> dict:
    """The history of a run without steps: the start's MSE and perceptual distance per image, "total" their sum."""
    mse = mse_per_image(images, targets)
    perceptual = pipeline.perceptual(images, targets)
    return {
        "step": 0,
        "phase": 0,
        "target": "start",
        "lr": 0.0,
        "total": (mse + perceptual).cpu().tolist(),
        "mse": mse.cpu().tolist(),
        "perceptual": perceptual.cpu().tolist(),
    }


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
