"""Safe reading of third-party checkpoints and strict loading with one-line errors.

Every checkpoint goes through ``torch.load(weights_only=True)`` (no arbitrary unpickling), and every
state_dict is loaded strictly: a file in the wrong layout is refused with its name and the first
missing / unexpected keys, never half-loaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from magec.errors import file_error


def read_checkpoint(path: str | Path, what: str, allowed_globals: Sequence[Any] = ()) -> object:
    """``torch.load(path, weights_only=True)`` on CPU; a failure is a ``MagecError`` naming ``path`` and ``what``.

    ``allowed_globals`` extends the safe loader's allow-list for one call (e.g. ``argparse.Namespace``,
    which training checkpoints keep their arguments in).
    """
    path = Path(path)
    if not path.is_file():
        raise file_error(path, f"no such file (expected {what})")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure here means a bad or unsafe file
        first = (str(exc).splitlines() or [""])[0][:200]
        raise file_error(path, f"not loadable as {what} with the safe loader ({type(exc).__name__}: {first})") from None


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A plain state_dict (or one under a ``state_dict`` key) of tensors."""
    state = read_checkpoint(path, what)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise file_error(path, f"expected a state_dict of tensors ({what})")
    return state


def strict_load(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path, layout: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the first missing / unexpected keys.

    BatchNorm ``num_batches_tracked`` counters are optional (checkpoints saved by old PyTorch lack them
    and they do not affect inference).
    """
    state = dict(state)
    expected = module.state_dict()
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) e.g. {', '.join(unexpected[:3])}")
        raise file_error(path, f"does not match {layout}: {'; '.join(parts)}")
    for key, value in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(value.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise file_error(path, f"does not match {layout}: {key} has shape {shape}, expected {tuple(value.shape)}")
    check_finite(state, path)
    module.load_state_dict(state, strict=True)


def check_finite(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse weights holding NaN or infinities (a broken file would otherwise give NaN losses, silently)."""
    for key, value in tensors.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise file_error(path, f"{key} holds NaN or infinite values")


def read_safetensors(path: str | Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors and metadata; unreadable: a one-line error naming ``what`` it should be."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as exc:
        raise file_error(path, f"not a readable {what} ({exc})") from None


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


def safetensors_metadata(path: str | Path, what: str) -> dict[str, str]:
    """A safetensors file's metadata, from its header only; unreadable: a one-line error naming ``what``."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise file_error(path, f"not a readable {what} ({exc})") from None


def safetensors_format(path: str | Path) -> str | None:
    """The ``format`` entry of a safetensors file's metadata (how magec marks its own files), or None."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("format")
    except Exception:  # any unreadable or foreign file is simply "not ours"
        return None
