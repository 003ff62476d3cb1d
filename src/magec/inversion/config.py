"""Inversion settings: the paper's protocol as defaults (Sec. 4, "Training Protocol").

MAGEC: start from the generator's initial (average) latent; Adam (0.9, 0.999, 1e-8); phase 1, 100 steps
with lambda_MAGEC = 3e-4, lambda_LPIPS = 0.5, lambda_MSE = 1e-3, lambda_ID = 3e-4; phase 2, 100 steps with
lambda_MSE = lambda_LPIPS = 0.5, the others unchanged; learning rate 0.07, times 0.8 every 25 steps.

The ``encoder`` methods start from an encoder's code instead (``pipeline.encoder``): ``encoder`` is that code
alone, ``encoder+magec`` the MAGEC schedule shortened for a good start (:data:`ENCODER_STEPS_FRACTION` of the
paper's steps at :data:`ENCODER_LR`, both measured), ``encoder+magec+pti`` then pivotal tuning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from magec import validation
from magec.errors import MagecError
from magec.latent.kinds import MAGEC_EDITORS  # the editors the MAGEC term takes its edits from


@dataclass(frozen=True)
class Phase:
    """One stage of the optimisation: how many steps, and the weight of each loss term."""

    steps: int
    mse: float
    perceptual: float
    identity: float = 0.0
    magec: float = 0.0
    #: What this phase optimises: "latent" (the code) or "noise" (the generator's noise maps).
    target: str = "latent"

    def __post_init__(self) -> None:
        validation.integer("phase steps", self.steps, 1)
        for name in ("mse", "perceptual", "identity", "magec"):
            validation.non_negative(f"lambda_{name.upper() if name != 'perceptual' else 'LPIPS'}", getattr(self, name))
        validation.choice("phase target", self.target, ("latent", "noise"))


#: Where an inversion may start (``InversionConfig.start``).
STARTS = ("mean", "encoder")

PAPER_PHASES = (
    Phase(steps=100, mse=1e-3, perceptual=0.5, identity=3e-4, magec=3e-4),
    Phase(steps=100, mse=0.5, perceptual=0.5, identity=3e-4, magec=3e-4),
)


@dataclass(frozen=True)
class InversionConfig:
    phases: tuple[Phase, ...] = PAPER_PHASES
    lr: float = 0.07
    lr_decay: float = 0.8
    lr_decay_every: int = 25
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    #: Latent space to optimise; None = the generator's editing space. "w+" for Image2StyleGAN++.
    space: str | None = None
    #: Step of the InterfaceGAN edits inside the MAGEC loss; None = the editor's default.
    edit_amount: float | None = None
    #: Attributes whose edits the MAGEC loss uses; None = all of the pack's attributes.
    attributes: tuple[str, ...] | None = field(default=None)
    #: Which of the pack's editors gives the e_i of the MAGEC loss (Eq. 2): the paper's InterfaceGAN, or StyleFlow.
    magec_editor: str = "interfacegan"
    #: Where the optimisation starts: "mean" (the generator's ``initial_latent``, the paper's) or "encoder" (the
    #: pipeline's encoder's code for each image). ``invert(init=...)`` overrides both with given codes.
    start: str = "mean"

    def __post_init__(self) -> None:
        validation.choice("--magec-editor", self.magec_editor, MAGEC_EDITORS)
        validation.choice("start", self.start, STARTS)
        if not self.phases and self.start != "encoder":  # the encoder's code alone needs no optimisation
            raise MagecError("an inversion needs at least one phase")
        validation.positive("learning rate", self.lr)
        validation.in_range("lr decay", self.lr_decay, 1e-12, 1.0)
        validation.integer("lr decay period", self.lr_decay_every, 1)
        for beta in self.betas:
            validation.in_range("Adam beta", beta, 0.0, 0.999999999)
        validation.positive("Adam eps", self.eps)
        if self.edit_amount is not None:
            validation.in_range(
                "edit amount", self.edit_amount, -validation.MAX_EDIT_AMOUNT, validation.MAX_EDIT_AMOUNT
            )

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    def lr_at(self, step: int) -> float:
        """Learning rate at global step ``step`` (0-based): exponential decay every ``lr_decay_every`` steps."""
        return self.lr * self.lr_decay ** (step // self.lr_decay_every)

    def phase_at(self, step: int) -> Phase:
        for phase in self.phases:
            if step < phase.steps:
                return phase
            step -= phase.steps
        raise IndexError("step beyond the schedule")


#: The paper's three methods (its Tables 1-3 and user study compare these).
PAPER_METHODS = ("magec", "no-magec", "im2stylegan++")
#: Every method; the lists below are derived from the names, so a new method is added here only.
METHODS = (*PAPER_METHODS, "magec+pti", "no-magec+pti", "encoder", "encoder+magec", "encoder+magec+pti")
#: Methods followed by pivotal tuning of the generator (``magec.inversion.pti``).
PTI_METHODS = tuple(m for m in METHODS if m.endswith("+pti"))
#: Methods that start from the pipeline's encoder (``Pipeline.encoder``) and need one.
ENCODER_METHODS = tuple(m for m in METHODS if m.split("+")[0] == "encoder")
#: The ``+pti`` methods that start from the generator's mean (need no encoder): the demo's and the studio's.
MEAN_PTI_METHODS = tuple(m for m in PTI_METHODS if m not in ENCODER_METHODS)
#: ``encoder+magec``'s schedule: this share of the paper's steps (in each phase, and of the learning-rate decay
#: period, so the rate falls as far as over the full schedule), at this learning rate. Measured on 16 generated
#: faces of the embedded default with its trained encoder (README, "Starting from an encoder"): at 25% of the steps,
#: learning rates 0.01 / 0.02 / 0.04 / 0.07 gave a perceptual distance of 3.43 / 2.83 / 2.26 / 1.90 (full magec:
#: 0.94) with the MAGEC term and the edits' strength about equal; that encoder's start is far from the photo (MSE
#: 0.084), so smaller steps only leave it there: the paper's rate stays.
ENCODER_STEPS_FRACTION = 0.25
ENCODER_LR = 0.07
#: Beside ``<name>.latent.safetensors``: the generator pivotal tuning made for that image.
PTI_SUFFIX = ".pti.safetensors"


def base_method(method: str) -> str:
    """The latent-optimisation part of a method: ``magec+pti`` -> ``magec``."""
    return method.removesuffix("+pti")


def needs_encoder(method: str) -> bool:
    """Does ``method`` start from the pipeline's encoder (``encoder``, ``encoder+magec``, ``encoder+magec+pti``)?"""
    return method in ENCODER_METHODS


def method_config(
    method: str,
    steps_scale: float = 1.0,
    lambda_magec: float | None = None,
    lambda_id: float | None = None,
    magec_editor: str = "interfacegan",
) -> InversionConfig:
    """The paper's three methods. ``steps_scale`` shortens every phase (tests, quick previews);
    ``lambda_magec`` / ``lambda_id`` replace those weights in every phase (the paper: 3e-4 each);
    ``magec_editor`` picks the editor whose edits the MAGEC term uses (``interfacegan`` in the paper, or ``styleflow``).

    - ``magec``: the full Eq. 3 with the two-phase schedule.
    - ``no-magec``: the paper's ablation, the same schedule with lambda_MAGEC = 0.
    - ``im2stylegan++``: Eq. 1 (MSE + LPIPS), 1000 steps on the latent (W+ where the generator has it)
      then 1000 on the noise maps where it has them; Adam at a constant 0.01 as in Image2StyleGAN.
    - ``encoder``: the encoder's code alone (no step).
    - ``encoder+magec``: ``magec`` started from the encoder's code, with :data:`ENCODER_STEPS_FRACTION` of its
      steps (and of its decay period) at :data:`ENCODER_LR`.
    """
    validation.positive("--steps-scale", steps_scale)
    for name, value in (("--lambda-magec", lambda_magec), ("--lambda-id", lambda_id)):
        if value is not None:
            validation.non_negative(name, value)
    validation.choice("--method", method, METHODS)
    method = base_method(method)

    def scaled(p: Phase) -> Phase:
        p = replace(p, steps=max(1, round(p.steps * steps_scale)))
        if lambda_id is not None and p.target == "latent":
            p = replace(p, identity=lambda_id)
        if lambda_magec is not None and p.magec > 0:
            p = replace(p, magec=lambda_magec)
        return p

    if method == "magec":
        return InversionConfig(phases=tuple(scaled(p) for p in PAPER_PHASES), magec_editor=magec_editor)
    if method == "encoder":
        return InversionConfig(phases=(), start="encoder")
    if method == "encoder+magec":
        short = tuple(replace(p, steps=max(1, round(p.steps * ENCODER_STEPS_FRACTION))) for p in PAPER_PHASES)
        return InversionConfig(
            phases=tuple(scaled(p) for p in short),
            lr=ENCODER_LR,
            lr_decay_every=max(1, math.ceil(InversionConfig.lr_decay_every * ENCODER_STEPS_FRACTION)),
            magec_editor=magec_editor,
            start="encoder",
        )
    if method == "no-magec":
        return InversionConfig(phases=tuple(scaled(replace(p, magec=0.0)) for p in PAPER_PHASES))
    if method == "im2stylegan++":
        phases = (Phase(1000, mse=0.5, perceptual=0.5), Phase(1000, mse=0.5, perceptual=0.5, target="noise"))
        return InversionConfig(phases=tuple(scaled(p) for p in phases), lr=0.01, lr_decay=1.0, space="w+")
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
