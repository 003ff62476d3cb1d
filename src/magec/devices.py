"""Device selection: ``auto`` means CUDA when present, else CPU."""

from __future__ import annotations

import torch

from magec.errors import MagecError


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's weights live (first parameter, else first buffer; CPU for a module without either)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda`` / ``cuda:1`` into a usable ``torch.device``."""
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise MagecError(f"--device {name!r}: not a device name ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MagecError(f"--device {name}: CUDA is not available on this machine")
    return device
