"""One entry point for every encoder magec can use: its own files, and e4e's / pSp's published checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

from magec.encoders.base import Encoder
from magec.encoders.names import CHECKPOINT_KINDS
from magec.errors import MagecError
from magec.generators.base import Generator


def load_encoder(spec: str, generator: Generator, device: torch.device | str = "cpu") -> Encoder:
    """The encoder ``spec`` names, checked against ``generator``.

    ``PATH.safetensors`` (or any path): a magec encoder file (``magec train-encoder``); ``e4e:PATH`` / ``psp:PATH``:
    e4e's Encoder4Editing or pSp's GradualStyleEncoder checkpoint. Every failure is one ``MagecError`` line
    naming the file.
    """
    kind, sep, rest = spec.partition(":")
    if sep and kind in CHECKPOINT_KINDS:
        if not rest:
            raise MagecError(f"--encoder {kind}:PATH needs the checkpoint path after the colon")
        from magec.encoders.e4e import load_e4e_encoder

        return load_e4e_encoder(Path(rest), generator, device, kind=kind)
    from magec.encoders.files import load_magec_encoder

    return load_magec_encoder(Path(spec), generator, device)
