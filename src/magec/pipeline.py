"""A Pipeline bundles what one pack needs on one device: generator, describer F, pack, losses."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from magec.describers import load_describer
from magec.describers.base import Describer
from magec.devices import resolve_device
from magec.errors import MagecError
from magec.generators import load_generator
from magec.generators.base import Generator
from magec.latent.interpolation import InterpolationEditor
from magec.losses.perceptual import PerceptualLoss, build_perceptual
from magec.pack import Pack

log = logging.getLogger("magec")


@dataclass
class Pipeline:
    generator: Generator
    describer: Describer
    pack: Pack
    perceptual: PerceptualLoss
    identity: Any | None
    device: torch.device

    def settings(self) -> dict[str, Any]:
        """What produced a result, for output metadata."""
        return {
            "generator": self.generator.spec,
            "describer": self.describer.spec,
            "perceptual": self.perceptual.name,
            "identity": getattr(self.identity, "name", None) or "off",
            "device": str(self.device),
        }


def build_identity_loss(spec: str, device: torch.device) -> Any | None:
    if spec in ("", "none", "off"):
        return None
    from magec.losses.specs import build_identity

    return build_identity(spec, device)


def assemble_pipeline(
    generator: Generator,
    describer: Describer,
    pack: Pack,
    perceptual: str = "auto",
    identity: str = "none",
    device: str | torch.device = "auto",
) -> Pipeline:
    """Put already-built parts together (tests and ``magec demo`` build them in memory)."""
    device = resolve_device(device)
    pack.to(device)
    pack.editors["interpolate"] = InterpolationEditor(generator)
    identity_loss = build_identity_loss(identity, device)
    if identity_loss is None:
        log.info("identity loss: off (no --identity network configured); lambda_ID has no effect")
    return Pipeline(
        generator.to(device),
        describer.to(device),
        pack,
        build_perceptual(perceptual, device, describer),
        identity_loss,
        device,
    )


def load_pipeline(
    pack_dir: str | Path,
    device: str | torch.device = "auto",
    perceptual: str = "auto",
    identity: str = "none",
    generator: str | None = None,
    describer: str | None = None,
) -> Pipeline:
    """Load a pack and the generator and describer it was prepared with (or compatible overrides)."""
    device = resolve_device(device)
    pack = Pack.load(pack_dir, device)
    gen = load_generator(generator or pack.generator_spec, device)
    if gen.latent_dim != pack.latent_dim:
        raise MagecError(
            f"{pack_dir}: pack latent size {pack.latent_dim} does not match generator {gen.spec} ({gen.latent_dim})"
        )
    desc = load_describer(describer or pack.describer_spec, device)
    if desc.layout.dim != pack.layout.dim:
        raise MagecError(
            f"{pack_dir}: pack descriptor size {pack.layout.dim} does not match describer {desc.spec} ({desc.layout.dim})"
        )
    return assemble_pipeline(gen, desc, pack, perceptual, identity, device)
