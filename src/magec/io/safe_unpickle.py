"""A restricted unpickler: only classes and functions on an explicit allow-list may be loaded.

Pickles can run arbitrary code: every global they name is imported and may be called. NVIDIA's
StyleGAN2 ``.pkl`` files go further, embedding the Python source of their network classes and
``exec``-ing it on load (``torch_utils.persistence``). We never do either: the unpickler resolves each
global through an allow-list of (module, name) -> object, where the object is a known-safe function
(the tensor-rebuild helpers torch itself allows in ``weights_only`` mode) or an inert stand-in that only
records the state it is given. Anything else is refused before it is imported.
"""

from __future__ import annotations

import collections
import io
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from magec.errors import MagecError, file_error


class RefusedPickle(MagecError):
    """The pickle names a global that is not on the allow-list."""


def _load_storage_from_bytes(data: bytes) -> Any:
    """Stand-in for ``torch.storage._load_from_bytes``: the same bytes, read with torch's weights-only loader."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("storage payload is not bytes")
    return torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """numpy's array and scalar reconstructors (under both the numpy 1 and numpy 2 module names)."""
    multiarray = getattr(np, "_core", None) or np.core
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = multiarray.multiarray._reconstruct
        table[(module, "scalar")] = multiarray.multiarray.scalar
    return table


#: Globals any torch/numpy pickle may use: data containers and tensor rebuilders, nothing that runs code.
BASE_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    **_numpy_globals(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` consults an allow-list and never imports anything."""

    def __init__(self, file: BinaryIO, allowed: Mapping[tuple[str, str], Any]) -> None:
        super().__init__(file)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise RefusedPickle(f"refusing to load {module}.{name}: not on the allow-list") from None

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle(f"refusing persistent id {str(pid)[:60]!r}: not supported")


def restricted_load(path: str | Path, extra_allowed: Mapping[tuple[str, str], Any] | None = None) -> Any:
    """Unpickle ``path`` with ``BASE_ALLOWED`` plus ``extra_allowed``; any failure is a one-line MagecError."""
    allowed: dict[tuple[str, str], Any] = dict(BASE_ALLOWED)
    allowed.update(extra_allowed or {})
    path = Path(path)
    try:
        with path.open("rb") as f:
            return RestrictedUnpickler(f, allowed).load()
    except RefusedPickle as exc:
        raise RefusedPickle(f"{path}: {exc}") from None
    except MagecError:
        raise
    except Exception as exc:  # truncated, corrupted or foreign files
        raise file_error(
            path, f"not a readable pickle ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from None


def inert_factory(make: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a stand-in constructor so a bad argument list reads as a corrupted pickle, not a crash."""

    def build(*args: Any) -> Any:
        try:
            return make(*args)
        except (TypeError, ValueError, KeyError) as exc:
            raise pickle.UnpicklingError(f"malformed persistent object ({exc})") from None

    return build
