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
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from magec.errors import file_error
from magec.generators.base import select_noise
from magec.io.atomic import atomic_path, write_json
from magec.io.images import save_png
from magec.inversion.optimizer import InversionResult

LATENT_FORMAT = "magec-latent"


@dataclass
class SavedLatent:
    latent: torch.Tensor
    space: str
    noise: list[torch.Tensor] | None
    source: torch.Tensor | None
    metadata: dict[str, Any]


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    return ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def save_latent(path: str | Path, latent: torch.Tensor, space: str, noise: list[torch.Tensor] | None, source: torch.Tensor | None, metadata: dict[str, Any]) -> Path:
    tensors = {"latent": latent.detach().cpu().contiguous()}
    for i, n in enumerate(noise or []):
        tensors[f"noise.{i}"] = n.detach().cpu().contiguous()
    if source is not None:
        tensors["source"] = to_uint8(source).contiguous()
    meta = {"format": LATENT_FORMAT, "space": space, "metadata": json.dumps(metadata, sort_keys=True)}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_latent(path: str | Path) -> SavedLatent:
    """Read a latent written by ``magec invert``; a wrong or corrupted file raises a one-line MagecError."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "no such latent file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise file_error(path, f"not a readable safetensors latent ({exc})") from None
    if meta.get("format") != LATENT_FORMAT or "latent" not in tensors:
        raise file_error(path, "not a magec latent (written by `magec invert`)")
    noise_keys = sorted((k for k in tensors if k.startswith("noise.")), key=lambda k: int(k.split(".")[1]))
    source = tensors.get("source")
    return SavedLatent(
        latent=tensors["latent"],
        space=meta.get("space", ""),
        noise=[tensors[k] for k in noise_keys] or None,
        source=(source.float() / 127.5 - 1.0) if source is not None else None,
        metadata=json.loads(meta.get("metadata", "{}")),
    )


def write_inversion_outputs(out_dir: str | Path, names: list[str], sources: torch.Tensor, result: InversionResult, settings: dict[str, Any]) -> list[Path]:
    """Write ``<name>.latent.safetensors``, ``<name>.png`` and ``<name>.json`` for each image of the batch."""
    out_dir = Path(out_dir)
    written = []
    for i, name in enumerate(names):
        noise = select_noise(result.noise, i)
        meta = {**settings, "method": result.method, "space": result.space, "source_name": name}
        written.append(save_latent(out_dir / f"{name}.latent.safetensors", result.latents[i : i + 1], result.space, noise, sources[i], meta))
        written.append(save_png(result.images[i], out_dir / f"{name}.png"))
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
