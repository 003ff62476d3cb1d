"""Files an inversion writes per image: the latent (safetensors), the reconstruction (PNG), a JSON record.

The latent file is self-contained for ``magec edit``: it holds the code, the noise maps when they were
optimised, the source image (uint8) and metadata (space, generator, method, pack).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from magec.errors import MagecError, file_error
from magec.generators.base import Generator
from magec.generators.delta import apply_delta, delta_metadata, fingerprint, save_delta, weight_delta
from magec.inversion.config import PTI_METHODS, PTI_SUFFIX
from magec.inversion.optimizer import InversionResult
from magec.inversion.projection import Projection
from magec.io.atomic import atomic_path, write_json
from magec.io.checkpoints import canonical_safetensors, read_safetensors, safetensors_metadata
from magec.io.hashing import sha256_file
from magec.io.images import save_png, to_uint8

LATENT_FORMAT = "magec-latent"
#: The latent file's suffix (``<name>.latent.safetensors``; the tuned generator is ``<name>.pti.safetensors``).
LATENT_SUFFIX = ".latent.safetensors"


def delta_path_for(latent_path: str | Path) -> Path:
    """Where a ``+pti`` inversion puts the tuned generator of ``<name>.latent.safetensors``."""
    path = Path(latent_path)
    return path.with_name(path.name.removesuffix(".latent.safetensors") + PTI_SUFFIX)


def check_tuned_pair(latent_path: str | Path, untuned: bool = False) -> Path | None:
    """The tuned generator (delta) to render ``latent_path`` with, or None; checked from headers only, before any
    model loads.

    A latent inverted with a ``+pti`` method needs its delta; a delta beside a latent must record that latent's
    SHA-256 (``magec invert`` and the studio's downloads write it). A missing, swapped, unreadable delta, a
    folder in its place, or one written before deltas recorded their latent, is a one-line error, never a
    silent fallback to the untuned generator: ``untuned`` (``magec edit --untuned``) asks for that explicitly.
    """
    latent_path = Path(latent_path)
    delta = delta_path_for(latent_path)
    if untuned:
        return None
    how = "or --untuned to edit with the untuned generator"
    method = _latent_method(latent_path)
    if not (delta.exists() or delta.is_symlink()):
        if method in PTI_METHODS:
            raise file_error(
                delta,
                f"missing: {latent_path.name} was inverted with {method}, whose edits need the generator tuned for "
                f"it; put it back beside the latent, {how}",
            )
        return None
    try:
        meta = delta_metadata(delta)
    except MagecError as exc:
        raise MagecError(f"{exc} ({how})") from None
    recorded = meta.get("latent_sha256")
    if recorded is None:
        raise file_error(
            delta,
            f"records no latent it belongs to (written before magec recorded it); invert {latent_path.name} again "
            f"with a +pti method, {how}",
        )
    if recorded != sha256_file(latent_path):
        raise file_error(delta, f"belongs to another latent, not to {latent_path.name}; {how}")
    return delta


def _latent_method(path: Path) -> str | None:
    try:
        return json.loads(safetensors_metadata(path, "safetensors latent").get("metadata", "{}")).get("method")
    except (ValueError, AttributeError):
        return None  # load_latent reports a broken latent


def tuned_generator_for(latent_path: str | Path, base: Generator, untuned: bool = False) -> Generator | None:
    """The tuned generator saved beside a latent by a ``+pti`` inversion (refused if tuned from another
    generator or for another latent, see :func:`check_tuned_pair`), or None for a latent without one."""
    delta = check_tuned_pair(latent_path, untuned)
    return apply_delta(base, delta) if delta is not None else None


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


def load_latent(path: str | Path) -> Projection:
    """Read a latent written by ``magec invert`` or the studio (its method, where its face sits in the photo and
    the rest of its metadata included); a wrong or corrupted file raises a one-line MagecError."""
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
    return Projection(
        method=str(metadata.get("method", "")),
        latent=tensors["latent"],
        space=meta.get("space", ""),
        noise=[tensors[k] for k in noise_keys] or None,
        source=(source[None].float() / 127.5 - 1.0) if source is not None else None,
        photo=metadata.get("photo") or None,
        metadata=metadata,
    )


def check_latent_fits(saved: Projection, generator: Generator, path: str | Path) -> None:
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


def save_projection(
    projection: Projection,
    stem: str | Path,
    metadata: dict[str, Any],
    base: Generator | None = None,
    base_sha: str | None = None,
) -> list[Path]:
    """Write ``<stem>.latent.safetensors`` (code, noise, source, ``metadata``) and, for a tuned projection,
    ``<stem>.pti.safetensors``: what changed against ``base``, recording the latent file's SHA-256 so that it
    cannot be paired with another latent (``base_sha``: ``base``'s fingerprint, when the caller has it)."""
    stem = Path(stem)
    source = projection.source[0] if projection.source is not None else None
    latent_path = stem.with_name(stem.name + LATENT_SUFFIX)
    latent = save_latent(latent_path, projection.latent, projection.space, projection.noise, source, metadata)
    if projection.tuned is None:
        return [latent]
    if base is None:
        raise ValueError("save_projection needs the base generator to store a pivotal-tuning delta")
    delta = weight_delta(base, projection.tuned)
    sha = base_sha or fingerprint(base)
    return [latent, save_delta(stem.with_name(stem.name + PTI_SUFFIX), delta, base, sha, sha256_file(latent))]


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
        projection = result.projection(i, sources[i : i + 1])
        meta = {**settings, "method": result.method, "space": result.space, "source_name": name}
        if source_files is not None:
            meta["source_file"] = source_files[i]
        if extra is not None and extra[i]:
            meta["photo"] = extra[i]
        files = save_projection(projection, out_dir / name, meta, base, base_sha)
        written += [files[0], save_png(result.images[i], out_dir / f"{name}.png"), *files[1:]]
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
