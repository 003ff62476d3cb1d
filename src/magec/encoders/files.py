"""magec's encoder files: safetensors with metadata that say what the network is and which generator it serves.

``ENC.safetensors`` holds the network's tensors; its metadata: ``format`` (``magec-encoder``), ``version``, the
generator's spec and resolution, the space and shape of the codes, the architecture, and the training settings.
The held-out report is written beside it as ``ENC.report.json``. Reading checks every one of these, and the
tensors key by key and for NaN/inf, so a file of another layout or for another generator is refused in one line
naming it, before any code is computed with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from magec.encoders.network import SPEC, EncoderArchitecture, MagecEncoder
from magec.errors import MagecError, file_error
from magec.generators.base import Generator
from magec.io.atomic import atomic_path, write_json
from magec.io.checkpoints import check_finite, read_safetensors, safetensors_format, strict_load

ENCODER_FORMAT = "magec-encoder"
ENCODER_VERSION = 1


def report_path(path: str | Path) -> Path:
    """``ENC.safetensors`` -> ``ENC.report.json`` (the held-out report beside the encoder)."""
    path = Path(path)
    stem = path.name[: -len(".safetensors")] if path.name.endswith(".safetensors") else path.name
    return path.with_name(stem + ".report.json")


def is_magec_encoder(path: Path) -> bool:
    """True for a file magec wrote as an encoder (``--force`` rules: such a file may be replaced)."""
    return safetensors_format(path) == ENCODER_FORMAT


def encoder_metadata(
    encoder: MagecEncoder, generator: Generator, extra: dict[str, Any] | None = None
) -> dict[str, str]:
    """The file's metadata (safetensors metadata is str -> str: JSON values)."""
    return {
        "format": ENCODER_FORMAT,
        "version": str(ENCODER_VERSION),
        "generator": generator.spec,
        "generator_resolution": str(generator.resolution),
        "resolution": str(encoder.resolution),
        "space": encoder.space,
        "code_shape": json.dumps(list(encoder.code_shape)),
        "architecture": encoder.architecture.to_json(),
        "training": json.dumps(extra or {}, sort_keys=True),
    }


def save_encoder(
    path: str | Path,
    encoder: MagecEncoder,
    generator: Generator,
    report: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write the encoder (atomically) and, when given, its held-out report beside it (``ENC.report.json``)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=encoder_metadata(encoder, generator, training))
    if report is not None:
        write_json(report_path(path), {"format": "magec-encoder-report", "file": path.name, **report})
    return path


def _meta_json(meta: dict[str, str], key: str) -> Any:
    if key not in meta:
        raise KeyError(key)
    return json.loads(meta[key])


def read_encoder(path: str | Path, device: torch.device | str = "cpu") -> tuple[MagecEncoder, dict[str, str]]:
    """An encoder file, checked (format, version, metadata, tensors key by key, finite); not yet against a
    generator (:func:`load_magec_encoder` does that)."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "no such file (expected a magec encoder .safetensors)")
    tensors, meta = read_safetensors(path, "magec encoder (.safetensors)")
    if meta.get("format") != ENCODER_FORMAT:
        found = f"format {meta['format']!r}" if "format" in meta else "no magec format marker"
        raise file_error(path, f"not a magec encoder ({found}; make one with `magec train-encoder`)")
    if meta.get("version") != str(ENCODER_VERSION):
        raise file_error(
            path,
            f"encoder version {meta.get('version')!r} is not supported (this magec reads version {ENCODER_VERSION}); "
            "train it again with `magec train-encoder`",
        )
    try:
        architecture = EncoderArchitecture.from_dict(_meta_json(meta, "architecture"))
        shape = tuple(int(s) for s in _meta_json(meta, "code_shape"))
        resolution, space = int(meta["resolution"]), meta["space"]
        int(meta["generator_resolution"])
        if "mean_code" not in tensors:
            raise KeyError("mean_code")
        encoder = MagecEncoder(resolution, space, shape, architecture, tensors["mean_code"])
    except (KeyError, ValueError, TypeError, RuntimeError, MagecError, json.JSONDecodeError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0][:150]
        raise file_error(path, f"inconsistent magec encoder metadata ({what})") from None
    check_finite(tensors, path)
    strict_load(encoder, tensors, path, f"the {SPEC} layout its metadata describes")
    encoder.requires_grad_(False)
    return encoder.eval().to(device), meta


def check_encoder_generator(
    path: str | Path, encoder: MagecEncoder, meta: dict[str, str], generator: Generator
) -> None:
    """Refuse, naming the file, an encoder made for another generator: resolution, space, code shape, mean W."""
    made_for = f"{meta.get('generator', '?')} at {meta.get('generator_resolution', '?')} px"
    if meta.get("generator_resolution") != str(generator.resolution):
        raise file_error(
            path,
            f"encoder made for {made_for}, not for {generator.spec} at {generator.resolution} px (mismatched "
            "generator resolution); train one for this generator with `magec train-encoder`",
        )
    try:
        encoder.check_generator(generator)
    except MagecError as exc:
        raise file_error(path, f"encoder made for {made_for}: {exc}") from None
    if encoder.space == "w+":  # another StyleGAN2 of the same shape: its mean W tells them apart
        w_avg = generator.initial_latent().detach().float().to(encoder.mean_code.device)
        if not torch.allclose(encoder.mean_code[0], w_avg, rtol=1e-3, atol=1e-3):
            raise file_error(
                path, f"encoder made for {made_for}, whose mean W differs from {generator.spec}'s (another checkpoint)"
            )


def load_magec_encoder(path: str | Path, generator: Generator, device: torch.device | str = "cpu") -> MagecEncoder:
    """A magec encoder file for ``generator``: every failure is one ``MagecError`` line naming the file."""
    encoder, meta = read_encoder(path, device)
    check_encoder_generator(path, encoder, meta, generator)
    return encoder
