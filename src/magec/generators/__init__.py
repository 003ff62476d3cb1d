"""Pretrained generators behind one interface (``magec.generators.base.Generator``).

Spec strings: ``dcgan-face`` (the embedded default) and ``stylegan2:PATH`` (a user's checkpoint in
rosinality's .pt layout, NVIDIA's .pkl, or magec's .safetensors). Importing this package is cheap:
torch and the networks load when a generator is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magec.errors import MagecError

if TYPE_CHECKING:
    import torch

    from magec.generators.base import Generator, LatentSpace

EMBEDDED_GENERATOR = "dcgan-face"

__all__ = ["EMBEDDED_GENERATOR", "Generator", "LatentSpace", "load_generator"]


def __getattr__(name: str) -> Any:
    if name in ("Generator", "LatentSpace"):
        from magec.generators import base

        return getattr(base, name)
    raise AttributeError(f"module 'magec.generators' has no attribute {name!r}")


def load_generator(spec: str = EMBEDDED_GENERATOR, device: str | torch.device = "auto") -> Generator:
    """Build the generator a spec string names, on ``device``."""
    from magec.devices import resolve_device

    kind, _, arg = spec.partition(":")
    if kind == "dcgan-face":
        from magec.generators.dcgan import DCGANFace

        return DCGANFace.from_checkpoint(arg or None, device=resolve_device(device))
    if kind == "stylegan2":
        if not arg:
            raise MagecError("--generator stylegan2:PATH needs the checkpoint path after the colon")
        from magec.generators.stylegan2 import load_stylegan2

        return load_stylegan2(arg, device=resolve_device(device))
    raise MagecError(f"unknown generator {spec!r}; use 'dcgan-face' or 'stylegan2:PATH'")
