"""Pretrained generators behind one interface (``magec.generators.base.Generator``).

Spec strings: ``dcgan-face`` (the embedded default) and ``stylegan2:PATH`` (a user's checkpoint in
rosinality's .pt layout, NVIDIA's .pkl, or magec's .safetensors).
"""

from __future__ import annotations

import torch

from magec.devices import resolve_device
from magec.errors import MagecError
from magec.generators.base import Generator, LatentSpace

EMBEDDED_GENERATOR = "dcgan-face"

__all__ = ["EMBEDDED_GENERATOR", "Generator", "LatentSpace", "load_generator"]


def load_generator(spec: str = EMBEDDED_GENERATOR, device: str | torch.device = "auto") -> Generator:
    """Build the generator a spec string names, on ``device``."""
    device = resolve_device(device)
    kind, _, arg = spec.partition(":")
    if kind == "dcgan-face":
        from magec.generators.dcgan import DCGANFace

        return DCGANFace.from_checkpoint(arg or None, device=device)
    if kind == "stylegan2":
        if not arg:
            raise MagecError("--generator stylegan2:PATH needs the checkpoint path after the colon")
        from magec.generators.stylegan2 import load_stylegan2

        return load_stylegan2(arg, device=device)
    raise MagecError(f"unknown generator {spec!r}; use 'dcgan-face' or 'stylegan2:PATH'")
