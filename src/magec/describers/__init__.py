"""Image describers F (``magec.describers.base.Describer``).

Spec strings: ``faces[:dcgan|ffhq]`` (the embedded default: dlib's gender and age networks plus face-api's
expression network, ``describers.faces``; ``faces-dlib`` is its fallback without face-api's files),
``dlib-age-gender[:dcgan|ffhq]`` (dlib's gender and age networks only, with the face-chip box of the embedded
DCGAN's faces or of FFHQ-aligned images),
``celeba:PATH`` (a 40-attribute CelebA classifier trained with ``magec train-describer``) and
``onnx:MODEL.onnx:LAYOUT.json`` (your own network; ``magec.describers.custom``, which also wraps torch modules).
Importing this package is cheap: torch and the networks load when a describer is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magec.errors import MagecError

if TYPE_CHECKING:
    import torch

    from magec.describers.base import Attribute, Describer, DescriptorLayout, Head, descriptor_loss

EMBEDDED_DESCRIBER = "faces"

__all__ = [
    "EMBEDDED_DESCRIBER",
    "Attribute",
    "Describer",
    "DescriptorLayout",
    "Head",
    "descriptor_loss",
    "load_describer",
    "resolved_spec",
]


def __getattr__(name: str) -> Any:
    if name in ("Attribute", "DescriptorLayout", "Head"):  # torch-free
        from magec.describers import layout

        return getattr(layout, name)
    if name in ("Describer", "descriptor_loss"):
        from magec.describers import base

        return getattr(base, name)
    raise AttributeError(f"module 'magec.describers' has no attribute {name!r}")


def resolved_spec(spec: str) -> str:
    """The spec ``load_describer(spec)`` builds: ``faces`` is ``faces-dlib`` when face-api's files are missing."""
    if spec.partition(":")[0] == "faces":
        from magec.describers.faces import effective_spec

        return effective_spec(spec)
    return spec


def load_describer(spec: str = EMBEDDED_DESCRIBER, device: str | torch.device = "auto") -> Describer:
    """Build the describer a spec string names, on ``device``."""
    from magec.devices import resolve_device

    device = resolve_device(device)
    kind, _, arg = spec.partition(":")
    if kind == "dlib-age-gender":
        from magec.describers.dlib_faces import DlibFaceDescriber

        describer = DlibFaceDescriber(chip=arg or "dcgan")
        if arg:  # e.g. dlib-age-gender:ffhq for FFHQ-aligned generators; recorded so packs reload the same F
            describer.spec = spec
        return describer.to(device)
    if kind in ("faces", "faces-dlib"):
        from magec.describers.faces import load_faces_describer

        return load_faces_describer(spec).to(device)
    if kind == "celeba":
        if not arg:
            raise MagecError("--describer celeba:PATH needs the describer file after the colon")
        from magec.describers.celeba import CelebADescriber

        return CelebADescriber.load(arg, device=device)
    if kind == "onnx":
        from magec.describers.custom import load_onnx_describer

        return load_onnx_describer(arg).to(device)
    raise MagecError(
        f"unknown describer {spec!r}; use 'faces[:dcgan|ffhq]', 'dlib-age-gender[:dcgan|ffhq]', 'celeba:PATH' "
        "or 'onnx:MODEL.onnx:LAYOUT.json'"
    )
