"""A generator tuned for one image (pivotal tuning), stored as what changed against its base.

The file is safetensors: the tensors whose values differ from the base generator's, and in the metadata
the base's spec and a SHA-256 fingerprint of its weights, and the SHA-256 of the latent file it was tuned
around (``latent_sha256``). Applying a delta to any other generator is refused, and ``magec edit`` refuses
a delta beside a latent it does not belong to, so an edit is never rendered with weights that do not
belong together.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import torch
from safetensors.torch import save

from magec.errors import file_error
from magec.generators.base import Generator
from magec.io.atomic import atomic_path
from magec.io.checkpoints import canonical_safetensors, check_finite, read_safetensors, safetensors_metadata

DELTA_FORMAT = "magec-generator-delta"


def fingerprint(generator: Generator) -> str:
    """SHA-256 over the generator's state (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(generator.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()


def weight_delta(base: Generator, tuned: Generator) -> dict[str, torch.Tensor]:
    """The tuned generator's tensors that differ from the base's."""
    before = base.state_dict()
    return {k: v.detach().cpu().clone() for k, v in tuned.state_dict().items() if not torch.equal(v, before[k])}


def save_delta(
    path: str | Path,
    delta: dict[str, torch.Tensor],
    base: Generator,
    base_sha256: str | None = None,
    latent_sha256: str | None = None,
) -> Path:
    """Write ``delta`` atomically with the base generator's spec and fingerprint, and (``latent_sha256``) the
    SHA-256 of the latent file it belongs to."""
    meta = {"format": DELTA_FORMAT, "base_spec": base.spec, "base_sha256": base_sha256 or fingerprint(base)}
    if latent_sha256 is not None:
        meta["latent_sha256"] = latent_sha256
    path = Path(path)
    data = canonical_safetensors(save({k: v.contiguous() for k, v in delta.items()}, metadata=meta))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)  # the same delta is the same bytes in every process
    return path


def delta_metadata(path: str | Path) -> dict[str, str]:
    """A delta file's metadata, read from its header only; a missing, foreign or unreadable file is one line."""
    path = Path(path)
    if path.is_dir():
        raise file_error(path, "is a folder, not a generator delta")
    meta = safetensors_metadata(path, "generator delta")
    if meta.get("format") != DELTA_FORMAT:
        raise file_error(path, f"not a magec generator delta (format {meta.get('format')!r})")
    return meta


def apply_delta(base: Generator, path: str | Path, base_sha256: str | None = None) -> Generator:
    """A copy of ``base`` with the delta at ``path`` applied; refused (one line) for another base generator."""
    path = Path(path)
    tensors, meta = read_safetensors(path, "generator delta")
    if meta.get("format") != DELTA_FORMAT:
        raise file_error(path, f"not a magec generator delta (format {meta.get('format')!r})")
    if meta.get("base_sha256") != (base_sha256 or fingerprint(base)):
        raise file_error(
            path, f"was tuned from another generator ({meta.get('base_spec')}), not from {base.spec}'s weights"
        )
    state = base.state_dict()
    for name, tensor in tensors.items():
        if name not in state or tuple(state[name].shape) != tuple(tensor.shape):
            raise file_error(path, f"tensor {name} does not fit {base.spec}")
    check_finite(tensors, path)
    tuned = copy.deepcopy(base)
    tuned.load_state_dict({**state, **{k: v.to(state[k].device) for k, v in tensors.items()}})
    return tuned
