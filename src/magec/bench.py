"""``magec bench``: speed figures, measured on the current device (never asserted by tests).

- ``step_ms``: one optimisation step (forward + backward + Adam) per method, batch 1.
- ``magec_share``: the MAGEC term's share of a full magec step, for 1 and 40 attributes (a synthetic
  40-attribute LinkNet and InterfaceGAN editor, as the paper's CelebA setup has).
- ``images_per_s``: full magec inversions (the paper's 200 steps) per second, for batch sizes 1, 4, 16.
- ``stylegan2_step``: one W+ inversion step of a config-f StyleGAN2 (random weights) at 256 and 1024: time,
  memory kept for backward and (CUDA) peak memory, fused / plain / bf16 (/ torch.compile on CUDA), batch 1 (and 8
  on CUDA): ``stylegan2_steps``.
- ``identity``: the dlib identity loss's share of a magec step (forward + backward) and how much longer a
  whole magec inversion takes with it (``--identity dlib``), batch 1.
- ``pti_seconds_per_image``: pivotal tuning per image at PTI's 350 steps, for batch 1 and 4 (measured over
  a shorter run and scaled by its step count).
- ``encoder_ms_per_image``: one forward pass of the pipeline's encoder (magec's own network, untrained when the
  pipeline has none: the time does not depend on the weights), batch 8, per image.
- ``studio_edit_ms`` / ``studio_inversion_images_per_s``: through ``magec studio``'s server (``served``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from magec.describers.base import Attribute, DescriptorLayout, Head
from magec.devices import resolve_device
from magec.inversion import invert, method_config
from magec.latent.interfacegan import InterfaceGANEditor
from magec.latent.linknet import LinkNet
from magec.losses.magec_loss import MagecLoss
from magec.losses.mse import mse_per_image
from magec.pipeline import Pipeline
from magec.seeding import generator_for
from magec.timing import median_ms


def synthetic_magec(latent_dim: int, attributes: int, device: torch.device, seed: int = 0) -> MagecLoss:
    """A MAGEC loss with ``attributes`` binary attributes and random LinkNet / boundaries (for timing only)."""
    g = generator_for(seed)
    names = [f"attr{i}" for i in range(attributes)]
    layout = DescriptorLayout(
        tuple(Head(n, "binary", 1) for n in names), tuple(Attribute(n, n, "binary") for n in names)
    )
    linknet = LinkNet(latent_dim, layout)
    with torch.no_grad():
        linknet.linear.weight.copy_(torch.randn(layout.dim, latent_dim, generator=g) * 0.1)
    linknet.requires_grad_(False)
    directions = torch.nn.functional.normalize(torch.randn(attributes, latent_dim, generator=g), dim=1)
    editor = InterfaceGANEditor(names, directions, 3.0, torch.ones(attributes), torch.ones(attributes))
    return MagecLoss(linknet, editor).to(device)


def step_time(pipeline: Pipeline, method: str, batch: int, repeats: int) -> float:
    """Milliseconds per optimisation step of ``method`` for ``batch`` images (phase 1 of its schedule)."""
    config = method_config(method)
    config = replace(config, phases=(replace(config.phases[0], steps=3),))
    images = pipeline.generator.synthesize(pipeline.generator.sample_latents(batch, 4242)).detach()
    ms = median_ms(lambda: invert(pipeline, images, method, config), repeats=repeats)
    return ms / 3


def magec_share(pipeline: Pipeline, attributes: int, repeats: int) -> float:
    """MAGEC term (forward + backward) over a full magec step (generator, MSE, perceptual and MAGEC), batch 1."""
    gen, device = pipeline.generator, pipeline.device
    loss = synthetic_magec(gen.latent_dim, attributes, device)
    target = gen.synthesize(gen.sample_latents(1, 7)).detach()
    descriptor = torch.rand(1, attributes, device=device)
    edited = loss.targets(descriptor)
    z = gen.initial_latent()[None].clone().requires_grad_(True)

    def magec_only() -> None:
        loss(z.flatten(1), descriptor, edited).sum().backward()

    def full() -> None:
        x = gen.synthesize(z)
        total = (
            1e-3 * mse_per_image(x, target)
            + 0.5 * pipeline.perceptual(x, target)
            + 3e-4 * loss(z.flatten(1), descriptor, edited)
        )
        total.sum().backward()

    return median_ms(magec_only, repeats * 4) / median_ms(full, repeats)


def identity_figures(pipeline: Pipeline, repeats: int) -> dict[str, float]:
    """The dlib identity loss: its share of a phase-1 magec step, and inversion time with / without it."""
    from dataclasses import replace as dc_replace

    from magec.losses.specs import build_identity

    identity = build_identity("dlib", pipeline.device)
    gen = pipeline.generator
    target = gen.synthesize(gen.sample_latents(1, 11)).detach()
    z = gen.initial_latent()[None].clone().requires_grad_(True)
    identity(gen.synthesize(z).detach(), target)  # finds the target's face chip once, as an inversion does

    def identity_only() -> None:
        identity(gen.synthesize(z), target).sum().backward()

    with_identity = dc_replace(pipeline, identity=identity)
    without = dc_replace(pipeline, identity=None)
    plain, full = step_time(without, "magec", 1, repeats), step_time(with_identity, "magec", 1, repeats)
    generator_only = median_ms(lambda: gen.synthesize(z).sum().backward(), repeats * 2)
    return {
        "share_of_step": round((median_ms(identity_only, repeats * 2) - generator_only) / full, 4),
        "step_ms_with": round(full, 2),
        "step_ms_without": round(plain, 2),
        "inversion_time_ratio": round(full / plain, 3),
    }


def pti_seconds_per_image(pipeline: Pipeline, batch: int, steps: int = 20) -> float:
    """Seconds of pivotal tuning per image at PTI's published step count, from a ``steps``-step run."""
    from magec.inversion.pti import PTIConfig, pivotal_tuning

    gen = pipeline.generator
    images = gen.synthesize(gen.sample_latents(batch, 99)).detach()
    latents = gen.sample_latents(batch, 100).to(pipeline.device)
    config = PTIConfig()
    short = replace(config, steps=steps, lpips_threshold=None)
    seconds = (
        median_ms(lambda: pivotal_tuning(pipeline, images, latents, gen.editing_space.name, None, short), 1) / 1000
    )
    return seconds / steps * config.steps / batch


def encoder_ms_per_image(pipeline: Pipeline, batch: int = 8, repeats: int = 5) -> float:
    """Milliseconds per image of one encoder forward pass at ``batch`` (the issue's target: 20 ms at batch 8)."""
    from magec.encoders.network import MagecEncoder

    encoder = pipeline.encoder or MagecEncoder.for_generator(pipeline.generator).to(pipeline.device).eval()
    gen = pipeline.generator
    images = gen.synthesize(gen.sample_latents(batch, 4242)).detach()
    return median_ms(lambda: encoder.encode(images, batch), repeats=repeats) / batch


def run_bench(
    pipeline: Pipeline,
    repeats: int = 5,
    extra: dict[str, Callable[[torch.device], object]] | None = None,
    served: Callable[[Pipeline], dict] | None = None,
) -> dict:
    """All figures as one JSON-ready dict.

    ``served`` adds figures measured through a server on the same pipeline (``magec bench`` passes
    ``magec.studio.bench.studio_figures``: ``studio_edit_ms`` and ``studio_inversion_images_per_s``).
    """
    out: dict = {"device": str(pipeline.device), "torch_threads": torch.get_num_threads(), **pipeline.settings()}
    out["step_ms"] = {m: round(step_time(pipeline, m, 1, repeats), 2) for m in ("magec", "no-magec", "im2stylegan++")}
    out["magec_share"] = {str(a): round(magec_share(pipeline, a, repeats), 4) for a in (1, 40)}
    steps = method_config("magec").total_steps
    out["images_per_s"] = {
        str(b): round(b / (step_time(pipeline, "magec", b, repeats) * steps / 1000), 4) for b in (1, 4, 16)
    }
    out["identity"] = identity_figures(pipeline, repeats)
    out["pti_seconds_per_image"] = {str(b): round(pti_seconds_per_image(pipeline, b), 2) for b in (1, 4)}
    out["encoder_ms_per_image"] = {"8": round(encoder_ms_per_image(pipeline, 8, repeats), 3)}
    for name, fn in (extra or {}).items():
        out[name] = fn(pipeline.device)
    if served is not None:
        out.update(served(pipeline))
    return out


def stylegan2_steps(
    resolutions: tuple[int, ...] = (256, 1024), repeats: int = 3, batches: tuple[int, ...] | None = None
) -> Callable[[torch.device], dict[str, dict]]:
    """One W+ step of config-f StyleGAN2 per resolution and batch, in each variant: ``fused`` (what magec runs),
    ``plain`` (the same layers as separate tensor operations: the memory the fused layers save), ``bf16``
    (``--precision bf16``) and, on CUDA, ``fused+compile`` / ``bf16+compile`` (``torch.compile``; a variant that
    fails records its error). ``batches`` defaults to (1, 8) on CUDA and (1,) on a CPU."""

    def measure(device: torch.device) -> dict[str, dict]:
        from magec.generators.stylegan2.bench import step_stats

        variants = {"fused": {}, "plain": {"fused": False}, "bf16": {"precision": "bf16"}}
        if device.type == "cuda":
            variants |= {"fused+compile": {"compile": True}, "bf16+compile": {"precision": "bf16", "compile": True}}
        out: dict[str, dict] = {}
        for r in resolutions:
            for b in batches or ((1, 8) if device.type == "cuda" else (1,)):
                for name, options in variants.items():
                    try:
                        stats: dict = step_stats(r, b, device, repeats=repeats, **options)
                    except Exception as exc:  # a variant that cannot run is a figure too
                        stats = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
                    out[f"{r}px_batch{b}_{name}"] = stats
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
        return out

    return measure


def bench_pipeline(device: str = "auto", pack: str | None = None, perceptual: str = "auto") -> Pipeline:
    """The embedded pipeline: from ``pack``, else a small pack fitted now (timings do not depend on its quality)."""
    from magec.describers import EMBEDDED_DESCRIBER, load_describer
    from magec.generators import EMBEDDED_GENERATOR, load_generator
    from magec.pipeline import assemble_pipeline, load_pipeline
    from magec.prepare import PrepareConfig, prepare_pack

    device = resolve_device(device)
    if pack:
        return load_pipeline(pack, device, perceptual=perceptual, identity="none")  # identity: measured apart
    gen, desc = load_generator(EMBEDDED_GENERATOR, device), load_describer(EMBEDDED_DESCRIBER, device)
    small = prepare_pack(gen, desc, PrepareConfig(n_samples=600, ganspace_samples=300, styleflow=None))
    return assemble_pipeline(gen, desc, small, perceptual=perceptual, device=device)
