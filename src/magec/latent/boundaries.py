"""Direction files: read third-party ``.npy`` edit directions and export a pack's directions in that format.

InterfaceGAN stores a boundary as the unit normal of its SVM hyperplane in a ``.npy`` file of shape
(1, L), float32 (L = 512 for StyleGAN W); e4e and PTI ship their StyleGAN2 W directions the same way.
We read any (1, L) or (L,) real floating array, refuse anything else with a one-line error, and never
unpickle (``np.load(allow_pickle=False)``): an object array is refused, not executed.

Export writes each direction of a pack's linear editors (InterfaceGAN normals, GANSpace and SeFa
components) as one (1, L) float32 ``.npy`` file plus ``directions.json``, an index giving each file's
name, editor, operation, shape, default amount and SHA-256. Reading a file back gives the same float32
values bit for bit, so an exported direction edits exactly as the pack's editor does.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from magec.errors import MagecError, file_error
from magec.io.arrays import npy_header
from magec.io.atomic import atomic_path, write_json
from magec.io.json_files import read_json_file
from magec.latent.editors import DirectionEditor

INDEX_FILE = "directions.json"
INDEX_FORMAT = "magec-directions"
INDEX_VERSION = 1
#: InterfaceGAN's editing script walks from -3 to +3 along a unit normal: the default step of a lone file.
DEFAULT_FILE_AMOUNT = 3.0


def read_direction(path: str | Path, latent_dim: int) -> torch.Tensor:
    """A direction (L,) float32 from a (1, L) or (L,) ``.npy`` file; any problem is a one-line ``MagecError``."""
    path = Path(path)
    shape, _ = npy_header(path)  # sized from its header before the data is read
    if not (len(shape) == 1 or (len(shape) == 2 and shape[0] == 1)):
        raise file_error(path, f"expected a direction of shape (1, L) or (L,), got {shape}")
    if shape[-1] != latent_dim:
        raise file_error(path, f"direction has {shape[-1]} dimensions, the generator's editing space has {latent_dim}")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        text = str(exc)
        if "allow_pickle" in text:
            raise file_error(path, "holds pickled Python objects; only plain numeric .npy arrays are read") from None
        raise file_error(
            path, f"not a readable .npy array ({text.splitlines()[0][:160] if text else 'bad header'})"
        ) from None
    except (OSError, EOFError, SyntaxError) as exc:
        raise file_error(path, f"not a readable .npy array ({type(exc).__name__})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        raise file_error(
            path, f"expected a real floating-point array, got dtype {getattr(array, 'dtype', type(array).__name__)}"
        )
    if not (array.ndim == 1 or (array.ndim == 2 and array.shape[0] == 1)):
        raise file_error(path, f"expected a direction of shape (1, L) or (L,), got {array.shape}")
    if array.shape[-1] != latent_dim:
        raise file_error(
            path, f"direction has {array.shape[-1]} dimensions, the generator's editing space has {latent_dim}"
        )
    if not np.isfinite(array).all():
        raise file_error(path, "contains NaN or infinite values")
    if not np.any(array):
        raise file_error(path, "is all zeros: not a direction")
    return torch.from_numpy(np.ascontiguousarray(array.reshape(-1), dtype=np.float32).copy())


def load_direction(
    path: str | Path, latent_dim: int, name: str | None = None, default_amount: float = DEFAULT_FILE_AMOUNT
) -> DirectionEditor:
    """A one-operation editor from a direction file; the operation is ``name`` or the file's stem.

    The direction is used as stored (not renormalised), so amounts mean what they meant to the tool
    that wrote the file (InterfaceGAN: distance along the unit normal).
    """
    direction = read_direction(path, latent_dim)
    return DirectionEditor([name or Path(path).stem], direction[None], default_amount)


def _npy_bytes(direction: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, direction.detach().cpu().to(torch.float32).numpy().reshape(1, -1), allow_pickle=False)
    return buffer.getvalue()


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "direction"


def _owned_files(folder: Path) -> set[str]:
    """Files listed by an existing magec index in ``folder`` (ours to replace), empty if there is none."""
    index = folder / INDEX_FILE
    if not index.is_file():
        return set()
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise file_error(index, "exists and is not a magec direction index; refusing to overwrite it") from None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise file_error(index, "exists and is not a magec direction index; refusing to overwrite it")
    return {str(entry.get("file")) for entry in data.get("directions", []) if isinstance(entry, dict)} | {INDEX_FILE}


def export_directions(
    editors: dict[str, DirectionEditor], folder: str | Path, generator: str = "", latent_dim: int | None = None
) -> Path:
    """Write every direction of ``editors`` (kind -> linear editor) as ``<kind>_<operation>.npy`` + ``directions.json``.

    Each file is written atomically; existing files are replaced only if a previous magec export listed
    them (a file magec did not write is never overwritten). The index is written last.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise file_error(folder, "exists and is not a folder")
    owned = _owned_files(folder) if folder.is_dir() else set()
    entries: list[dict[str, Any]] = []
    payloads: list[tuple[Path, bytes]] = []
    dims = set()
    for kind, editor in editors.items():
        for i, operation in enumerate(editor.operations()):
            direction = editor.directions[i]
            dims.add(direction.numel())
            name = f"{_safe_name(kind)}_{_safe_name(operation)}"
            data = _npy_bytes(direction)
            entries.append(
                {
                    "name": name,
                    "file": f"{name}.npy",
                    "editor": kind,
                    "operation": operation,
                    "shape": [1, int(direction.numel())],
                    "dtype": "float32",
                    "default_amount": float(editor.default_amount),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
            payloads.append((folder / f"{name}.npy", data))
    if len({e["file"] for e in entries}) != len(entries):
        raise MagecError("two directions map to the same file name; rename an operation")
    if len(dims) > 1 or (latent_dim is not None and dims and dims != {latent_dim}):
        raise MagecError(
            f"directions have {sorted(dims)} dimensions; expected one latent size {latent_dim or ''}".rstrip()
        )
    for path, _ in payloads + [(folder / INDEX_FILE, b"")]:
        if path.exists() and path.name not in owned:
            raise file_error(path, "exists and was not written by a magec export; refusing to overwrite it")
    for path, data in payloads:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "generator": generator,
        "latent_dim": int(dims.pop()) if dims else latent_dim,
        "directions": entries,
    }
    write_json(folder / INDEX_FILE, index)
    return folder


def linear_editors(editors: dict[str, Any]) -> dict[str, DirectionEditor]:
    """The editors (kind -> editor) that are fixed directions: InterfaceGAN, GANSpace, SeFa, imported files."""
    return {kind: ed for kind, ed in editors.items() if isinstance(ed, DirectionEditor)}


def load_directions(folder: str | Path, latent_dim: int) -> dict[str, DirectionEditor]:
    """Editors by exported name from a folder written by ``export_directions``; every file is verified."""
    folder = Path(folder)
    index_path = folder / INDEX_FILE
    index = read_json_file(index_path, "missing: not a magec direction export", "index")
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or index.get("version") != INDEX_VERSION:
        raise file_error(index_path, f"not a {INDEX_FORMAT} index of version {INDEX_VERSION}")
    editors: dict[str, DirectionEditor] = {}
    for entry in index.get("directions", []):
        try:
            name, file, amount, digest = (
                str(entry["name"]),
                str(entry["file"]),
                float(entry["default_amount"]),
                str(entry["sha256"]),
            )
        except (KeyError, TypeError, ValueError):
            raise file_error(index_path, "an entry lacks name, file, default_amount or sha256") from None
        path = folder / file
        if Path(file).name != file:
            raise file_error(index_path, f"entry {name!r} points outside the folder ({file!r})")
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise file_error(path, "corrupted: SHA-256 does not match the index")
        editors[name] = load_direction(path, latent_dim, name=str(entry.get("operation", name)), default_amount=amount)
    return editors
