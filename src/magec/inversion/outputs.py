"""Files an inversion writes per image: the latent (safetensors), the reconstruction (PNG), a JSON record.

The latent file is self-contained for ``magec edit``: it holds the code, the noise maps when they were
optimised, the source image (uint8) and metadata (space, generator, method, pack).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from magec.errors import file_error
from magec.generators.base import Generator, select_noise
from magec.generators.delta import apply_delta, fingerprint, save_delta, weight_delta
from magec.inversion.config import PTI_SUFFIX
from magec.inversion.optimizer import InversionResult
from magec.io.atomic import atomic_path, write_json
from magec.io.checkpoints import read_safetensors
from magec.io.images import save_png, to_uint8

LATENT_FORMAT = "magec-latent"


def tuned_generator_for(latent_path: str | Path, base: Generator) -> Generator | None:
    """The tuned generator saved beside a latent by a ``+pti`` inversion (refused if tuned from another
    generator), or None when there is none."""
    path = Path(latent_path)
    delta = path.with_name(path.name.removesuffix(".latent.safetensors") + PTI_SUFFIX)
    return apply_delta(base, delta) if delta.is_file() else None


@dataclass
class SavedLatent:
    latent: torch.Tensor
    space: str
    noise: list[torch.Tensor] | None
    source: torch.Tensor | None
    metadata: dict[str, Any]


def save_latent(
    path: str | Path,
    latent: torch.Tensor,
    space: str,
    noise: list[torch.Tensor] | None,
    source: torch.Tensor | None,
    metadata: dict[str, Any],
) -> Path:
    tensors = {"latent": latent.detach().cpu().contiguous()}
    for i, n in enumerate(noise or []):
        tensors[f"noise.{i}"] = n.detach().cpu().contiguous()
    if source is not None:
        tensors["source"] = to_uint8(source).contiguous()
    meta = {"format": LATENT_FORMAT, "space": space, "metadata": json.dumps(metadata, sort_keys=True)}
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(canonical_safetensors(save(tensors, metadata=meta)))
    return path


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted.

    safetensors writes the header from a hash map, so the order of its keys (and so the file's bytes) changes
    from one process to the next; sorted, the same latent is the same bytes in every process and worker.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + n]), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if len(header) > n:  # never happens for safetensors' own compact JSON; keep the file as it was then
        return data
    return data[:8] + header + b" " * (n - len(header)) + data[8 + n :]


def load_latent(path: str | Path) -> SavedLatent:
    """Read a latent written by ``magec invert``; a wrong or corrupted file raises a one-line MagecError."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "no such latent file")
    tensors, meta = read_safetensors(path, "safetensors latent")
    if meta.get("format") != LATENT_FORMAT or "latent" not in tensors:
        raise file_error(path, "not a magec latent (written by `magec invert`)")
    try:
        noise_keys = sorted((k for k in tensors if k.startswith("noise.")), key=lambda k: int(k.split(".")[1]))
        metadata = json.loads(meta.get("metadata", "{}"))
    except (ValueError, IndexError) as exc:
        raise file_error(path, f"broken magec latent metadata ({exc})") from None
    if not isinstance(metadata, dict):
        raise file_error(path, "broken magec latent metadata (not a JSON object)")
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise file_error(path, f"{name} holds NaN or infinite values")
    source = tensors.get("source")
    if source is not None and (source.dtype != torch.uint8 or source.dim() != 3 or source.shape[0] != 3):
        raise file_error(
            path, f"source image has shape {list(source.shape)} and type {source.dtype}, expected (3, H, W) uint8"
        )
    return SavedLatent(
        latent=tensors["latent"],
        space=meta.get("space", ""),
        noise=[tensors[k] for k in noise_keys] or None,
        source=(source.float() / 127.5 - 1.0) if source is not None else None,
        metadata=metadata,
    )


def check_latent_fits(saved: SavedLatent, generator: Generator, path: str | Path) -> None:
    """Refuse (one line naming ``path``) a latent whose space, shape or noise maps the generator cannot take."""
    if saved.metadata.get("generator") not in (None, generator.spec):
        raise file_error(
            path, f"inverted with generator {saved.metadata.get('generator')}, but the pack uses {generator.spec}"
        )
    if saved.space not in generator.spaces:
        raise file_error(
            path, f"latent space {saved.space!r} is not one of {generator.spec}'s ({', '.join(generator.spaces)})"
        )
    expected = (1, *generator.spaces[saved.space].shape)
    if tuple(saved.latent.shape) != expected:
        raise file_error(
            path,
            f"latent has shape {list(saved.latent.shape)}, {generator.spec} needs {list(expected)} in {saved.space}",
        )
    if saved.noise:
        shapes = [tuple(n.shape[1:]) for n in generator.make_noise(1, seed=0)]
        if [tuple(n.shape[1:]) for n in saved.noise] != shapes or any(n.shape[0] != 1 for n in saved.noise):
            raise file_error(path, f"noise maps do not match {generator.spec}'s {len(shapes)} noise inputs")


def write_inversion_outputs(
    out_dir: str | Path,
    names: list[str],
    sources: torch.Tensor,
    result: InversionResult,
    settings: dict[str, Any],
    source_files: list[str] | None = None,
    extra: list[dict[str, Any]] | None = None,
    base: Generator | None = None,
) -> list[Path]:
    """Write ``<name>.latent.safetensors``, ``<name>.png`` and ``<name>.json`` for each image of the batch.

    ``source_files`` (the input paths, when the images came from files) and ``extra`` (one dict per image,
    e.g. where its face was framed in the photo) are recorded in the metadata. For the ``+pti`` methods
    each image's tuned generator is written as ``<name>.pti.safetensors``: what changed against ``base``.
    """
    if result.tuned is not None and base is None:
        raise ValueError("write_inversion_outputs needs the base generator to store pivotal-tuning deltas")
    base_sha = fingerprint(base) if result.tuned is not None else None
    out_dir = Path(out_dir)
    written = []
    for i, name in enumerate(names):
        noise = select_noise(result.noise, i)
        meta = {**settings, "method": result.method, "space": result.space, "source_name": name}
        if source_files is not None:
            meta["source_file"] = source_files[i]
        if extra is not None and extra[i]:
            meta["photo"] = extra[i]
        written.append(
            save_latent(
                out_dir / f"{name}.latent.safetensors", result.latents[i : i + 1], result.space, noise, sources[i], meta
            )
        )
        written.append(save_png(result.images[i], out_dir / f"{name}.png"))
        if result.tuned is not None:
            delta = weight_delta(base, result.tuned[i])
            written.append(save_delta(out_dir / f"{name}{PTI_SUFFIX}", delta, base, base_sha))
        final = result.history[-1] if result.history else {}
        record = {
            **meta,
            "steps": result.steps,
            "seconds_batch": round(result.seconds, 3),
            "seconds_per_image": round(result.seconds / len(names), 3),
            "batch_size": len(names),
            "notes": result.notes,
            "final": {k: (v[i] if isinstance(v, list) else v) for k, v in final.items()},
            "history": result.image_history(i),
        }
        out = out_dir / f"{name}.json"
        write_json(out, record)
        written.append(out)
    return written
