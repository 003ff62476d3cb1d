"""Train magec's encoder from a pack's generator alone: no data set, fresh sampled (code, image) pairs every batch.

Each step draws ``batch_size`` codes from a seed that depends only on (seed, step), synthesises their images,
encodes the images and synthesises the predicted codes again. The loss is image MSE + perceptual distance +
latent L2 (predicted vs. true code, in the encoder's space), plus an optional MAGEC term through the pack's
LinkNet: LinkNet of the predicted code should agree with F's descriptor of the image (``magec_target="describer"``)
or with LinkNet of the true code (``"linknet"``, no F call). A held-out set (its own seed stream) is measured at
the end: MSE, perceptual distance, F's agreement between each reconstruction and its input, latent error.

Checkpoints (``torch.save`` of tensors and plain values, read back with ``weights_only=True``) hold the
network, Adam's state and the step; a resumed run draws the same batches and ends equal to an uninterrupted one
up to float rounding. Ctrl-C stops between operations like every magec command (KeyboardInterrupt unwinds, the
checkpoint being written is a temporary file that is removed); the next run resumes from the last checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from magec import validation
from magec.describers.base import Describer, descriptor_loss
from magec.encoders.network import EncoderArchitecture, MagecEncoder
from magec.errors import MagecError, file_error
from magec.generators.base import Generator
from magec.io.atomic import atomic_path
from magec.io.checkpoints import read_checkpoint
from magec.latent.linknet import LinkNet
from magec.losses.perceptual import PerceptualLoss
from magec.memory import INVERSION_FACTOR, Budget, Chunking, chunk_size, inversion_bytes

CHECKPOINT_FORMAT = "magec-encoder-training"
MAGEC_TARGETS = ("linknet", "describer")


@dataclass(frozen=True)
class EncoderTrainingConfig:
    """Sized so the embedded default (64-px DCGAN) trains in a few minutes on a 2-core CPU (README figures)."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    #: Weights of the loss terms.
    lambda_mse: float = 1.0
    #: Off by default: on a CPU it costs half as much time again per step (F's features of both images); the
    #: perceptual distance is still reported on the held-out pairs.
    lambda_perceptual: float = 0.0
    lambda_latent: float = 0.1
    #: The MAGEC term through the pack's LinkNet (0: off, the default; an option to measure editability with).
    lambda_magec: float = 0.0
    magec_target: str = "linknet"
    #: The perceptual distance ``prepare`` and ``train-encoder`` train and report with (``build_perceptual`` spec).
    #: F's own features by default: LPIPS-VGG at every step would cost minutes more on a CPU.
    perceptual: str = "describer-features"
    seed: int = 0
    #: Held-out pairs measured at the end (drawn from their own seed stream, never trained on).
    heldout: int = 64
    #: A resumable checkpoint every this many steps (only when training is given a checkpoint path).
    checkpoint_every: int = 50
    architecture: EncoderArchitecture = field(default_factory=EncoderArchitecture)

    def __post_init__(self) -> None:
        validation.integer("--steps", self.steps, 0)
        validation.integer("--batch-size", self.batch_size, 1)
        validation.positive("--lr", self.lr)
        for name in ("lambda_mse", "lambda_perceptual", "lambda_latent", "lambda_magec"):
            validation.non_negative(f"--{name.replace('_', '-')}", getattr(self, name))
        if not any((self.lambda_mse, self.lambda_perceptual, self.lambda_latent, self.lambda_magec)):
            raise MagecError("encoder training: every loss weight is 0, so there is nothing to train")
        if self.magec_target not in MAGEC_TARGETS:
            raise MagecError(f"magec_target {self.magec_target!r} is not one of {', '.join(MAGEC_TARGETS)}")
        validation.integer("--seed", self.seed, 0)
        validation.integer("held-out count", self.heldout, 1)
        validation.integer("checkpoint period", self.checkpoint_every, 1)
        if not isinstance(self.architecture, EncoderArchitecture):
            raise MagecError(f"architecture must be an EncoderArchitecture, got {type(self.architecture).__name__}")

    def run_key(self, generator: Generator) -> str:
        """What a checkpoint must match to be continued: everything that changes the batches or the updates."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("steps", "heldout", "checkpoint_every")}
        return f"{generator.spec}|{generator.resolution}|{sorted(settings.items())}"


def pair_bytes(generator: Generator, architecture: EncoderArchitecture | None = None) -> int:
    """Estimated peak bytes of one training pair: an inversion step through the generator (the predicted code is
    synthesised and back-propagated) plus the encoder's own activations, widest at its first strided stage."""
    width = (architecture or EncoderArchitecture()).width
    half = max(1, int(generator.resolution) // 2)
    return inversion_bytes(generator) + int(INVERSION_FACTOR * 4 * width * half * half)


def training_batch(
    generator: Generator,
    override: int | None = None,
    architecture: EncoderArchitecture | None = None,
    budget: Budget | int | None = None,
) -> Chunking:
    """Pairs per training step: ``override`` (``--batch-size``) when given, else as many as the memory budget of
    the generator's device holds (:func:`magec.memory.chunk_size`), at most the default (32: the embedded 64-px
    DCGAN keeps it; a 1024-px StyleGAN2 gets a few). The batch changes the training, unlike ``prepare``'s chunks,
    so it is chosen once, up front, and recorded in the report."""
    default = EncoderTrainingConfig.batch_size
    per_pair = pair_bytes(generator, architecture)
    return chunk_size(per_pair, generator.device, budget=budget, cap=default, override=override)


@dataclass
class EncoderStep:
    """What ``train_encoder`` tells its callback after each step."""

    step: int
    total: int
    loss: float
    terms: dict[str, float]


#: Called after every step; returning True stops training there (the result has ``stopped=True``).
EncoderCallback = Callable[[EncoderStep], "bool | None"]


@dataclass
class EncoderTrainingResult:
    encoder: MagecEncoder
    #: The held-out report: means over ``config.heldout`` pairs (see :func:`heldout_report`).
    report: dict[str, Any]
    steps: int
    seconds: float
    resumed_from: int | None = None
    stopped: bool = False
    losses: list[float] = field(default_factory=list)
    #: The settings that produced it (recorded in the encoder file's metadata).
    training: dict[str, Any] = field(default_factory=dict)


def checkpoint_path(out: str | Path) -> Path:
    """``ENC.safetensors`` -> ``ENC.safetensors.ckpt``: the resumable checkpoint beside the encoder file."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def _batch_seed(seed: int, step: int, stream: int = 0) -> int:
    """A well-mixed seed for one batch: same (seed, step), same samples, in any run."""
    return int(np.random.SeedSequence([int(seed), int(stream), int(step)]).generate_state(1)[0])


@torch.no_grad()
def sample_pairs(generator: Generator, space: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` seeded codes in ``space`` and their images (the generator's own noise for noisy generators)."""
    codes = generator.sample_latents(n, seed)
    codes = generator.convert_latents(codes, generator.editing_space.name, space)
    return codes, generator.synthesize(codes, space).float()


def _linknet_codes(codes: torch.Tensor, space: str, generator: Generator) -> torch.Tensor:
    """Codes as LinkNet reads them: flattened editing-space codes (W+ codes averaged over layers to one W)."""
    if space != generator.editing_space.name and space == "w+":
        codes = codes.mean(1)
    return codes.flatten(1)


def attribute_agreement(describer: Describer, a: torch.Tensor, b: torch.Tensor, tolerance: float = 5.0) -> float:
    """How often F describes two image sets alike, averaged over attributes (binary: same side of 0.5;
    continuous: within ``tolerance`` units, as LinkNet's held-out agreement counts it)."""
    layout = describer.layout
    va, vb = layout.attribute_values(describer(a)), layout.attribute_values(describer(b))
    scores = []
    for i, attr in enumerate(layout.attributes):
        if attr.kind == "binary":
            scores.append(((va[:, i] > 0.5) == (vb[:, i] > 0.5)).float().mean().item())
        else:
            scores.append(((va[:, i] - vb[:, i]).abs() <= tolerance).float().mean().item())
    return float(np.mean(scores))


@torch.no_grad()
def heldout_report(
    encoder: MagecEncoder,
    generator: Generator,
    describer: Describer | None,
    perceptual: PerceptualLoss | None,
    n: int,
    seed: int,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Held-out figures of ``encoder``: image MSE, perceptual distance, F's agreement between each reconstruction
    and its input, latent MSE; and the same for the generator's mean code (what an inversion starts from today)."""
    device = generator.device
    encoder.eval()
    codes, images = sample_pairs(generator, encoder.space, n, _batch_seed(seed, 0, stream=1))
    start = generator.convert_latents(generator.initial_latent()[None], generator.editing_space.name, encoder.space)
    predicted = encoder.encode(images, batch_size).to(device)
    out: dict[str, Any] = {"n": n, "seed": seed}
    for name, pred in (("encoder", predicted), ("mean", start.expand_as(codes))):
        recon = torch.cat([generator.synthesize(c, encoder.space) for c in pred.split(batch_size)]).float()
        row: dict[str, float] = {
            "mse": (recon - images).pow(2).mean().item(),
            "latent_mse": (pred - codes).pow(2).mean().item(),
        }
        if perceptual is not None:
            row["perceptual"] = (
                torch.cat([perceptual(r, x) for r, x in zip(recon.split(batch_size), images.split(batch_size))])
                .mean()
                .item()
            )
        if describer is not None:
            row["f_agreement"] = attribute_agreement(describer, recon, images)
        out[name] = {k: round(v, 6) for k, v in row.items()}
    return out


def _save_checkpoint(
    path: Path,
    encoder: MagecEncoder,
    opt: torch.optim.Optimizer,
    config: EncoderTrainingConfig,
    run_key: str,
    step: int,
    losses: list[float],
) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "run": run_key,
        "batch_size": config.batch_size,
        "step": step,
        "model": encoder.state_dict(),
        "optimizer": opt.state_dict(),
        "losses": [float(x) for x in losses],
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def checkpoint_batch_size(path: str | Path) -> int | None:
    """The pairs per step a resumable checkpoint was trained with, or None (no checkpoint, or one written before
    it was recorded): a resumed run keeps its batch although the free memory it was sized from has changed."""
    if not Path(path).is_file():
        return None
    state = read_checkpoint(path, "a magec encoder training checkpoint")
    size = state.get("batch_size") if isinstance(state, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 1 else None


def _load_checkpoint(
    path: Path, encoder: MagecEncoder, opt: torch.optim.Optimizer, run_key: str
) -> tuple[int, list[float]]:
    state = read_checkpoint(path, "a magec encoder training checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise file_error(path, "not a magec encoder training checkpoint (move it away to start over)")
    if state.get("run") != run_key:
        raise file_error(
            path,
            "was written by a training run with other settings (resuming needs the same pack, --batch-size, "
            "--lambda-magec and --seed); delete it to start over",
        )
    try:
        encoder.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        return int(state["step"]), [float(x) for x in state["losses"]]
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        first = str(exc).splitlines()[0][:150] if str(exc) else ""
        raise file_error(path, f"inconsistent checkpoint ({type(exc).__name__}: {first})") from None


def train_encoder(
    generator: Generator,
    config: EncoderTrainingConfig | None = None,
    perceptual: PerceptualLoss | None = None,
    describer: Describer | None = None,
    linknet: LinkNet | None = None,
    checkpoint: str | Path | None = None,
    callback: EncoderCallback | None = None,
) -> EncoderTrainingResult:
    """Train magec's encoder for ``generator`` (on the generator's device) and measure it on held-out pairs.

    ``perceptual``: the distance of the perceptual term (when ``lambda_perceptual`` > 0) and of the report (None:
    neither). ``describer``: F, for the report's F-agreement and ``magec_target="describer"``. ``linknet``: the
    pack's LinkNet, needed when ``lambda_magec`` > 0. ``checkpoint``: a file to resume from (when it exists) and
    to write every ``checkpoint_every`` steps; it is left at the last step so a longer run can continue it.
    """
    config = config or EncoderTrainingConfig()
    if config.lambda_magec > 0 and linknet is None:
        raise MagecError("--lambda-magec needs the pack's LinkNet")
    if config.lambda_magec > 0 and config.magec_target == "describer" and describer is None:
        raise MagecError("the MAGEC term against F's descriptor needs the describer")
    device = generator.device
    encoder = MagecEncoder.for_generator(generator, config.architecture, seed=config.seed).to(device)
    opt = torch.optim.Adam(encoder.parameters(), lr=config.lr, betas=(0.9, 0.99))
    run_key = config.run_key(generator)
    start, losses, resumed = 0, [], None
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.exists():
        start, losses = _load_checkpoint(ckpt, encoder, opt, run_key)
        resumed = start
    started = time.perf_counter()
    space = encoder.space
    stopped = False
    encoder.train()
    step = start
    for step in range(start, config.steps):
        codes, images = sample_pairs(generator, space, config.batch_size, _batch_seed(config.seed, step))
        predicted = encoder(images)
        recon = generator.synthesize(predicted, space).float()
        terms: dict[str, torch.Tensor] = {}
        if config.lambda_mse:
            terms["mse"] = config.lambda_mse * (recon - images).pow(2).mean()
        if config.lambda_perceptual and perceptual is not None:
            terms["perceptual"] = config.lambda_perceptual * perceptual(recon, images).mean()
        if config.lambda_latent:
            terms["latent"] = config.lambda_latent * (predicted - codes).pow(2).mean()
        if config.lambda_magec and linknet is not None:
            if config.magec_target == "describer" and describer is not None:
                with torch.no_grad():
                    target = describer(images)
            else:
                target = linknet.layout.probabilities(linknet(_linknet_codes(codes, space, generator))).detach()
            logits = linknet(_linknet_codes(predicted, space, generator))
            terms["magec"] = config.lambda_magec * descriptor_loss(linknet.layout, logits, target)
        loss = torch.stack(list(terms.values())).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if ckpt is not None and (done % config.checkpoint_every == 0 or done == config.steps):
            _save_checkpoint(ckpt, encoder, opt, config, run_key, done, losses)
        if callback is not None and callback(
            EncoderStep(done, config.steps, losses[-1], {k: float(v.detach()) for k, v in terms.items()})
        ):
            stopped = done < config.steps
            if stopped and ckpt is not None:
                _save_checkpoint(ckpt, encoder, opt, config, run_key, done, losses)
            step = done
            break
        step = done
    seconds = time.perf_counter() - started
    encoder.eval()
    encoder.requires_grad_(False)
    report = heldout_report(encoder, generator, describer, perceptual, config.heldout, config.seed)
    report |= {"steps": step, "batch_size": config.batch_size, "train_seconds": round(seconds, 1)}
    training = {**asdict(config), "perceptual": getattr(perceptual, "name", None) or "off"}
    return EncoderTrainingResult(encoder, report, step, seconds, resumed, stopped, losses, training)
