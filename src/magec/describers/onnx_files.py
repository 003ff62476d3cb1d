"""Checks of an ONNX describer's files that need no torch, run before the translator (and torch) loads.

A hostile ``onnx:MODEL.onnx:LAYOUT.json`` (gigabytes of declared weights, an unsupported op, a node with the
wrong number of inputs, a bad layout file) is refused here in a fraction of a second, with the one line the
translator (``onnx_graph``) would give. ``OP_INPUTS`` is the one list of the ops the translator implements.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magec.describers.layout_file import ModelLayout, read_layout
from magec.errors import MagecError, file_error

if TYPE_CHECKING:
    import onnx

#: The ops the translator implements, each with the inputs it takes: (fewest, most; None: no bound). The
#: translator's table of implementations is checked against these names. Pad and Reshape accept their old
#: one-input form here, so that the translator refuses it with a clearer line (the pads or shape as attributes).
OP_INPUTS: dict[str, tuple[int, int | None]] = {
    "Conv": (2, 3),
    "Mul": (2, 2),
    "Add": (2, 2),
    "Relu": (1, 1),
    "MaxPool": (1, 1),
    "AveragePool": (1, 1),
    "GlobalAveragePool": (1, 1),
    "Pad": (1, 4),
    "Gemm": (2, 3),
    "Flatten": (1, 1),
    "Softmax": (1, 1),
    # What ``torch.onnx.export`` writes for small torch classifiers (checked against onnxruntime in tests).
    "BatchNormalization": (5, 5),
    "Sigmoid": (1, 1),
    "Tanh": (1, 1),
    "LeakyRelu": (1, 1),
    "Reshape": (1, 2),
    "MatMul": (2, 2),
    "Transpose": (1, 1),
    "Concat": (1, None),
    "Identity": (1, 1),
    "Constant": (0, 0),
}

#: The ops this translator implements; anything else in a graph is refused.
SUPPORTED_OPS: frozenset[str] = frozenset(OP_INPUTS)

#: The most weight bytes an ONNX describer may declare (initializers, sparse initializers, Constant nodes);
#: checked from the graph's dims before any weight, or any external data file, is read.
MAX_ONNX_WEIGHT_BYTES = 1 << 30

#: An ONNX file larger than its weights' limit plus room for the graph itself is refused before it is read.
MAX_ONNX_FILE_BYTES = MAX_ONNX_WEIGHT_BYTES + (64 << 20)


def check_declared_sizes(path: Path, graph: Any, limit: int = MAX_ONNX_WEIGHT_BYTES) -> None:
    """Refuse (one line naming the tensor) a graph whose tensors declare more than ``limit`` bytes in all."""
    import numpy as np
    from onnx import helper

    def itemsize(tensor: Any) -> int:
        try:
            return np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        except (KeyError, TypeError, ValueError):
            return 8

    def nbytes(dims: Iterable[int], tensor: Any) -> int:
        return math.prod(max(int(d), 0) for d in dims) * itemsize(tensor)

    declared = [(t.name, nbytes(t.dims, t)) for t in graph.initializer]
    # a sparse tensor is read densified: its declared dims count, not the values it stores
    declared += [(s.values.name or "sparse initializer", nbytes(s.dims, s.values)) for s in graph.sparse_initializer]
    for index, node in enumerate(graph.node):
        for attr in node.attribute:
            if attr.HasField("t"):
                declared.append((node_label(node, index), nbytes(attr.t.dims, attr.t)))
    total = 0
    for name, size in declared:
        total += size
        if total > limit:
            raise file_error(
                path, f"tensor {name!r} brings the declared weights to {total} bytes, more than the {limit} magec reads"
            )


def node_label(node: Any, index: int) -> str:
    """How errors name a node: its name, else its first output, else its place in the graph."""
    return node.name or (node.output[0] if len(node.output) and node.output[0] else f"#{index}")


def _count(n: int) -> str:
    return f"{n} input" if n == 1 else f"{n} inputs"


def _arity(low: int, high: int | None) -> str:
    if high is None:
        return f"at least {_count(low)}"
    if low == high:
        return _count(low)
    return f"{low} or {_count(high)}" if high == low + 1 else f"{low} to {_count(high)}"


def check_node(path: Path, node: Any, index: int) -> None:
    """Refuse, in one line naming the node, an op the translator lacks or inputs and outputs it cannot run."""
    label = node_label(node, index)
    if node.op_type not in SUPPORTED_OPS or node.domain not in ("", "ai.onnx"):
        raise file_error(
            path,
            f"unsupported ONNX op {node.op_type!r} (node {label!r}); allowed: {', '.join(sorted(SUPPORTED_OPS))}",
        )

    def refuse(problem: str) -> MagecError:
        return file_error(path, f"node {label!r} ({node.op_type}): {problem}")

    if not len(node.output) or not node.output[0]:
        raise refuse("has no output")
    low, high = OP_INPUTS[node.op_type]
    inputs = list(node.input)
    if len(inputs) < low or (high is not None and len(inputs) > high):
        raise refuse(f"needs {_arity(low, high)}, has {len(inputs)}")
    required = len(inputs) if high is None else low  # every input of a Concat is required
    missing = [k + 1 for k in range(required) if not inputs[k]]
    if missing:
        raise refuse(f"input {missing[0]} is empty, and is required")
    if node.op_type == "Constant":
        names = sorted(a.name for a in node.attribute)
        if names != ["value"]:
            raise refuse(f"needs exactly the 'value' attribute (a tensor), found {names}")
        if not node.attribute[0].HasField("t"):
            raise refuse("its 'value' attribute is not a tensor")


def check_onnx_file(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file without its external weights and refuse what the translator would refuse before torch.

    Returns the model (external weights not loaded), so that the translator reads the file once.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise file_error(path, "missing ONNX file")
    size = path.stat().st_size
    if size > MAX_ONNX_FILE_BYTES:
        raise file_error(path, f"ONNX file of {size} bytes, more than the {MAX_ONNX_FILE_BYTES} magec reads")
    try:
        model = onnx.load(str(path), load_external_data=False)  # external weights: sized first, below
    except Exception as exc:  # any decode failure means a bad file
        raise file_error(
            path,
            f"not a readable ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})",
        ) from None
    check_declared_sizes(path, model.graph)
    if len(model.graph.node) == 0:
        raise file_error(path, "ONNX graph has no nodes")
    for index, node in enumerate(model.graph.node):
        check_node(path, node, index)
    return model


@dataclass(frozen=True)
class OnnxSpec:
    """The checked parts of ``MODEL.onnx:LAYOUT.json``: the two paths, the layout, the model (no external data)."""

    model_path: Path
    layout_path: Path
    layout: ModelLayout
    model: onnx.ModelProto


def check_onnx_spec(arg: str) -> OnnxSpec:
    """Check ``MODEL.onnx:LAYOUT.json`` (the part after ``onnx:``): both files exist, the layout and the model pass."""
    model_arg, sep, layout_arg = arg.rpartition(":")
    if not sep or not model_arg or not layout_arg:
        raise MagecError("--describer onnx:MODEL.onnx:LAYOUT.json needs the model file and the layout file")
    model_path, layout_path = Path(model_arg).expanduser(), Path(layout_arg).expanduser()
    if not model_path.is_file():
        raise file_error(model_path, "missing ONNX file")
    layout = read_layout(layout_path)
    return OnnxSpec(model_path, layout_path, layout, check_onnx_file(model_path))
