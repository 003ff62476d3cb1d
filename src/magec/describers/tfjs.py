"""Read TF.js weight manifests and their binary shards into torch tensors, without TensorFlow.

Small pretrained face networks ship as TF.js "weights manifests": a JSON list of groups, each naming
its shard files (``paths``) and the tensors laid end to end in the concatenation of those shards
(``weights``: name, shape, dtype and an optional ``quantization``). The reader is an allow-list of what
TF.js itself writes for float weights:

- ``dtype`` ``float32`` stored raw (4 bytes little-endian per value);
- ``dtype`` ``float32`` with ``quantization`` ``{"dtype": "uint8" | "uint16", "scale": s, "min": m}``,
  decoded as ``q * s + m`` (TF.js computes this in double precision and stores float32; so do we);
- ``dtype`` ``float32`` with ``quantization`` ``{"dtype": "float16"}`` (IEEE half precision).

Anything else (other dtypes, unknown quantisation, a shard path that leaves the manifest's folder, a
missing, short or over-long shard, duplicate names, non-finite values) is refused with one line naming
the file, so a wrong or damaged download never becomes a silently wrong network.
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from magec.errors import file_error

#: Bytes per stored value of each quantisation dtype TF.js writes for float32 weights.
QUANTIZATION_BYTES: dict[str, int] = {"uint8": 1, "uint16": 2, "float16": 2}
#: Largest manifest we parse and largest tensor we allocate (values); face-api's nets are far below both.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_VALUES = 256 * 1024 * 1024


def _weight_spec(entry: object, manifest: Path) -> tuple[str, tuple[int, ...], str | None, float, float]:
    """Validate one manifest entry: (name, shape, quantisation dtype or None, scale, min)."""
    if not isinstance(entry, dict):
        raise file_error(manifest, f"weight entry {entry!r:.60} is not an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise file_error(manifest, f"weight entry without a name: {json.dumps(entry)[:80]}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise file_error(manifest, f"weight {name}: shape {shape!r} is not a list of non-negative integers")
    if math.prod(shape) > MAX_VALUES:
        raise file_error(manifest, f"weight {name}: shape {shape} is implausibly large")
    if entry.get("dtype") != "float32":
        raise file_error(manifest, f"weight {name}: dtype {entry.get('dtype')!r} is not supported (only float32)")
    quant = entry.get("quantization")
    if quant is None:
        return name, tuple(shape), None, 0.0, 0.0
    if not isinstance(quant, dict) or quant.get("dtype") not in QUANTIZATION_BYTES:
        raise file_error(manifest, f"weight {name}: quantization {quant!r} is not supported (uint8, uint16 or float16)")
    qdtype = quant["dtype"]
    if qdtype == "float16":
        return name, tuple(shape), qdtype, 0.0, 0.0
    scale, qmin = quant.get("scale"), quant.get("min")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (scale, qmin)):
        raise file_error(manifest, f"weight {name}: {qdtype} quantization needs finite 'scale' and 'min': {quant!r}")
    return name, tuple(shape), qdtype, float(scale), float(qmin)  # type: ignore[arg-type]


def _shard_path(manifest: Path, rel: object) -> Path:
    """A shard named in the manifest, which must be a plain file name or relative path inside its folder."""
    if not isinstance(rel, str) or not rel:
        raise file_error(manifest, f"shard path {rel!r} is not a file name")
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or "\\" in rel or any(p in ("..", ".") for p in parts):
        raise file_error(manifest, f"shard path {rel!r} leaves the manifest's folder")
    return manifest.parent.joinpath(*parts)


def _decode(raw: bytes, qdtype: str | None, scale: float, qmin: float) -> np.ndarray:
    """Stored bytes -> float32 values, exactly as TF.js's ``decodeWeights`` computes them."""
    if qdtype is None:
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if qdtype == "float16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32)
    q = np.frombuffer(raw, dtype="u1" if qdtype == "uint8" else "<u2").astype(np.float64)
    return (q * scale + qmin).astype(np.float32)


def read_manifest(manifest: str | Path) -> list[dict]:
    """Parse a weights manifest (a ``*-weights_manifest.json`` list, or a ``model.json`` with ``weightsManifest``)."""
    path = Path(manifest)
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise file_error(path, f"larger than {MAX_MANIFEST_BYTES} bytes; not a weights manifest")
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise file_error(path, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise file_error(path, f"not a TF.js weights manifest ({type(exc).__name__}: {str(exc)[:120]})") from None
    if isinstance(data, dict) and "weightsManifest" in data:
        data = data["weightsManifest"]
    if not isinstance(data, list) or not data:
        raise file_error(path, "not a TF.js weights manifest (expected a non-empty list of weight groups)")
    for group in data:
        if not (isinstance(group, dict) and all(isinstance(group.get(k), list) for k in ("paths", "weights"))):
            raise file_error(path, "not a TF.js weights manifest (a group lacks 'paths' or 'weights' lists)")
    return data


def load_tfjs_weights(manifest: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a TF.js weights manifest, decoded to float32 torch tensors in TF.js layout.

    Shards of a group are concatenated in order and must hold exactly the bytes the group's weights
    need: a missing, truncated or padded shard is refused, as is anything outside the allow-list above.
    """
    path = Path(manifest)
    out: dict[str, torch.Tensor] = {}
    for group in read_manifest(path):
        specs = [_weight_spec(e, path) for e in group["weights"]]
        shards = [_shard_path(path, rel) for rel in group["paths"]]
        chunks = []
        for shard in shards:
            try:
                chunks.append(shard.read_bytes())
            except FileNotFoundError:
                raise file_error(shard, f"missing shard of {path.name}") from None
            except OSError as exc:
                raise file_error(shard, f"cannot read shard ({exc.strerror})") from None
        buffer = b"".join(chunks)
        need = sum(math.prod(shape) * (QUANTIZATION_BYTES[q] if q else 4) for _, shape, q, _, _ in specs)
        if len(buffer) != need:
            where = shards[-1] if shards else path
            raise file_error(where, f"shards hold {len(buffer)} bytes, {path.name} describes {need}; corrupted")
        offset = 0
        for name, shape, qdtype, scale, qmin in specs:
            nbytes = math.prod(shape) * (QUANTIZATION_BYTES[qdtype] if qdtype else 4)
            values = _decode(buffer[offset : offset + nbytes], qdtype, scale, qmin)
            offset += nbytes
            if not np.isfinite(values).all():
                raise file_error(shards[0] if shards else path, f"weight {name} holds non-finite values; corrupted")
            if name in out:
                raise file_error(path, f"weight {name} appears twice")
            out[name] = torch.from_numpy(values.reshape(shape).copy())
    if not out:
        raise file_error(path, "describes no weights")
    return out
