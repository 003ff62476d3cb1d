"""Where an inversion starts, as the command line names it: ``--init mean|encoder|ENC.safetensors|e4e:PATH``.

``mean`` is the generator's mean (the paper's start); ``encoder`` the pipeline's encoder (the pack's own); a file
spec an encoder loaded by ``magec.encoders.loading.load_encoder``. Checked for form, for the method, and for the
file's presence before any model loads; the encoder itself is loaded once per process (:func:`attach_encoder`).
Nothing here imports torch at import time: ``magec invert --help`` and a refused ``--init`` stay fast.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from magec.encoders.names import CHECKPOINT_KINDS, PACK_ENCODER
from magec.errors import MagecError, file_error
from magec.inversion.config import needs_encoder
from magec.io.hashing import sha256_file

if TYPE_CHECKING:
    from magec.inversion.folder import FolderJob
    from magec.pipeline import Pipeline

#: ``--init`` words; anything else is an encoder file spec.
INIT_WORDS = ("mean", "encoder")


def default_init(method: str) -> str:
    """The start a method has without ``--init``: the encoder for the ``encoder`` methods, the mean otherwise."""
    return "encoder" if needs_encoder(method) else "mean"


def init_file(spec: str) -> Path | None:
    """The file an ``--init`` spec names (``e4e:PATH`` -> PATH), or None for ``mean`` / ``encoder``."""
    if spec in INIT_WORDS:
        return None
    kind, sep, rest = spec.partition(":")
    return Path(rest) if sep and kind in CHECKPOINT_KINDS else Path(spec)


def check_init(spec: str | None, method: str, pack: str | None = None) -> str:
    """``spec`` resolved (``None`` -> the method's default; a file made absolute), or a one-line error: ``mean``
    for a method that starts from an encoder, a missing encoder file, a ``--pack`` without its own encoder."""
    spec = default_init(method) if spec is None else spec.strip()
    if not spec:
        raise MagecError("argument --init: expected mean, encoder, ENC.safetensors or e4e:PATH")
    if spec == "mean":
        if needs_encoder(method):
            raise MagecError(
                f"argument --init: mean: --method {method} starts from an encoder; give --init encoder (the pack's), "
                "--init ENC.safetensors or --init e4e:PATH"
            )
        return spec
    if spec == "encoder":
        if pack is not None and (Path(pack) / "manifest.json").is_file() and not (Path(pack) / PACK_ENCODER).is_file():
            raise file_error(
                pack,
                f"has no encoder ({PACK_ENCODER}) for --init encoder: `magec train-encoder --pack {pack} --out "
                f"{Path(pack) / PACK_ENCODER}` makes one, or give --init ENC.safetensors / --init e4e:PATH",
            )
        return spec
    kind, sep, rest = spec.partition(":")
    if sep and kind in CHECKPOINT_KINDS and not rest.strip():
        raise MagecError(f"argument --init: {spec}: needs the checkpoint path after the colon")
    path = init_file(spec)
    assert path is not None  # not a word
    if not path.is_file():
        raise file_error(path, "no such encoder file (--init)" if not path.exists() else "is not a file (--init)")
    absolute = str(path.resolve())
    return f"{kind}:{absolute}" if sep and kind in CHECKPOINT_KINDS else absolute


def init_fingerprint(spec: str) -> str | None:
    """SHA-256 of the encoder file a resolved ``--init`` names (what a resumed run must match), else None."""
    path = init_file(spec)
    if path is None:
        return None
    try:
        return sha256_file(path)
    except OSError as exc:
        raise file_error(path, f"cannot be read ({exc.strerror or exc})") from None


def attach_encoder(pipeline: Pipeline, spec: str | None) -> Pipeline:
    """``pipeline`` with the encoder an ``--init`` file spec names (loaded and checked against the generator);
    unchanged for ``mean``, ``encoder`` or None. Call once per process, after the pipeline loads."""
    if spec is None or init_file(spec) is None:
        return pipeline
    from magec.encoders.loading import load_encoder

    encoder = load_encoder(spec, pipeline.generator, pipeline.device)
    encoder.check_generator(pipeline.generator)
    return replace(pipeline, encoder=encoder.eval())


def needs_start_encoder(job: FolderJob) -> bool:
    """Does ``job`` start from an encoder (an ``encoder`` method, or ``--init`` other than ``mean``)?"""
    return job.config.start == "encoder" or needs_encoder(job.method)
