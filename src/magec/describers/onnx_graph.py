"""Run a small ONNX graph as a differentiable torch module.

Pretrained describers sometimes ship only as ONNX files (dlib's age and gender networks do). onnxruntime
cannot give gradients with respect to the input, which LinkNet training and inversion need, so we
translate the graph node by node into torch calls. The translator is deliberately narrow: it knows a
fixed allow-list of ops (what plain CNNs exported from dlib use) and refuses anything else with a
one-line error, rather than guessing at semantics it has not been checked against.

Weights become frozen buffers, so the module follows ``.to(device)`` and never trains.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from magec.errors import file_error

#: The ops this translator implements; anything else in a graph is refused.
ALLOWED_OPS: frozenset[str] = frozenset(
    {"Conv", "Mul", "Add", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Pad", "Gemm", "Flatten", "Softmax"}
    # What ``torch.onnx.export`` writes for small torch classifiers (checked against onnxruntime in tests).
    | {"BatchNormalization", "Sigmoid", "Tanh", "LeakyRelu", "Reshape", "MatMul", "Transpose", "Concat", "Identity"}
    | {"Constant"}
)

#: Ops whose output is a feature map worth using as perceptual features (``activation_values``).
ACTIVATION_OPS: frozenset[str] = frozenset({"Relu", "LeakyRelu"})


def _attributes(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _split_pads(pads: list[int] | None, ndim: int) -> tuple[list[int], list[int]]:
    """ONNX pads ``[b1..bn, e1..en]`` -> (begins, ends), zeros when absent."""
    if not pads:
        return [0] * ndim, [0] * ndim
    return list(pads[:ndim]), list(pads[ndim:])


def _torch_pad(begins: list[int], ends: list[int]) -> list[int]:
    """Per-axis begin/end pads (first axis first) -> F.pad's last-axis-first list."""
    out: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends)):
        out += [int(b), int(e)]
    return out


#: The most weight bytes an ONNX describer may declare (initializers, sparse initializers, Constant nodes);
#: checked from the graph's dims before any weight, or any external data file, is read.
MAX_ONNX_WEIGHT_BYTES = 1 << 30


def check_declared_sizes(path: Path, graph: Any, limit: int = MAX_ONNX_WEIGHT_BYTES) -> None:
    """Refuse (one line naming the tensor) a graph whose tensors declare more than ``limit`` bytes in all."""
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
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                declared.append((node.name or node.output[0], nbytes(attr.t.dims, attr.t)))
    total = 0
    for name, size in declared:
        total += size
        if total > limit:
            raise file_error(
                path, f"tensor {name!r} brings the declared weights to {total} bytes, more than the {limit} magec reads"
            )


class OnnxGraphModule(nn.Module):
    """An ONNX graph (single input, single output, allow-listed ops) executed with torch ops.

    ``forward(x)`` returns the graph output; ``forward(x, capture=[...])`` also returns the named
    intermediate tensors (ONNX value names), for use as feature maps.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        import onnx
        from onnx import numpy_helper

        path = Path(path)
        self.source = str(path)
        if not path.is_file():
            raise file_error(path, "missing ONNX file")
        try:
            model = onnx.load(str(path), load_external_data=False)  # external weights: sized first, below
        except Exception as exc:  # any decode failure means a bad file
            raise file_error(
                path,
                f"not a readable ONNX model ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''})",
            ) from None
        graph = model.graph
        check_declared_sizes(path, graph)
        if any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph.initializer):
            from onnx.external_data_helper import load_external_data_for_model

            try:
                load_external_data_for_model(model, str(path.parent))
            except Exception as exc:  # missing, short or escaping external files
                raise file_error(path, f"external weights cannot be read ({str(exc).splitlines()[0][:200]})") from None
        if len(graph.node) == 0:
            raise file_error(path, "ONNX graph has no nodes")

        self._buffer_of: dict[str, str] = {}
        for init in graph.initializer:
            try:
                array = np.array(numpy_helper.to_array(init), copy=True)
            except Exception as exc:
                raise file_error(path, f"initializer {init.name!r} cannot be read ({exc})") from None
            name = f"w{len(self._buffer_of)}_" + re.sub(r"[^0-9a-zA-Z_]", "_", init.name)
            tensor = torch.from_numpy(array)
            if tensor.is_floating_point():
                tensor = tensor.float()
            self.register_buffer(name, tensor)
            self._buffer_of[init.name] = name

        inputs = [i.name for i in graph.input if i.name not in self._buffer_of]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise file_error(
                path, f"expected one image input and one output, found inputs {inputs} and {len(graph.output)} outputs"
            )
        self.input_name = inputs[0]
        self.output_name = graph.output[0].name

        self._opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
        # Check every node before running any, so a bad graph fails at load time with the file named.
        self._nodes: list[tuple[str, list[str], list[str], dict]] = []
        known = {self.input_name, *self._buffer_of}
        #: Outputs of activation nodes in graph order (candidate feature maps).
        self.activation_values: list[str] = []
        for node in graph.node:
            if node.op_type not in ALLOWED_OPS or node.domain not in ("", "ai.onnx"):
                raise file_error(
                    path,
                    f"unsupported ONNX op {node.op_type!r} (node {node.name or node.output[0]!r}); "
                    f"allowed: {', '.join(sorted(ALLOWED_OPS))}",
                )
            if node.op_type == "Constant" or (node.op_type == "Identity" and node.input[0] in self._buffer_of):
                self._fold_constant(path, node)  # becomes a buffer, so Reshape/Conv/Pad see a constant
                known.update(node.output)
                continue
            if node.op_type in ACTIVATION_OPS:
                self.activation_values.append(node.output[0])
            missing = [i for i in node.input if i and i not in known]
            if missing:
                raise file_error(
                    path, f"node {node.op_type} uses undefined values {missing} (graph not topologically sorted?)"
                )
            attrs = _attributes(node)
            self._check_node(path, node.op_type, list(node.input), attrs)
            self._nodes.append((node.op_type, list(node.input), list(node.output), attrs))
            known.update(node.output)
        if self.output_name not in known:
            raise file_error(path, f"graph output {self.output_name!r} is never produced")
        self.requires_grad_(False)
        self.eval()

    # ---- validation ------------------------------------------------------------------------------

    def _fold_constant(self, path: Path, node) -> None:
        """A Constant node (a ``value`` tensor) or an Identity of a constant becomes a frozen buffer."""
        if node.op_type == "Identity":
            self._buffer_of[node.output[0]] = self._buffer_of[node.input[0]]
            return
        from onnx import numpy_helper

        attrs = _attributes(node)
        if set(attrs) != {"value"}:
            raise file_error(path, f"Constant: only the 'value' attribute is supported, found {sorted(attrs)}")
        tensor = torch.from_numpy(np.array(numpy_helper.to_array(attrs["value"]), copy=True))
        if tensor.is_floating_point():
            tensor = tensor.float()
        name = f"w{len(self._buffer_of)}_" + re.sub(r"[^0-9a-zA-Z_]", "_", node.output[0])
        self.register_buffer(name, tensor)
        self._buffer_of[node.output[0]] = name

    def _check_node(self, path: Path, op: str, inputs: list[str], attrs: dict) -> None:
        def refuse(problem: str) -> None:
            raise file_error(path, f"{op}: {problem}")

        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            refuse("auto_pad is not supported")
        if op in ("MaxPool", "AveragePool"):
            begins, ends = _split_pads(attrs.get("pads"), len(attrs.get("kernel_shape", [])))
            if begins != ends:
                refuse("asymmetric pooling pads are not supported")
            if any(d != 1 for d in attrs.get("dilations", [])):
                refuse("dilated pooling is not supported")
            if op == "MaxPool" and attrs.get("storage_order", 0) != 0:
                refuse("storage_order != 0 is not supported")
        if op == "Pad":
            mode = attrs.get("mode", b"constant")
            if mode not in (b"constant", "constant"):
                refuse(f"pad mode {mode!r} is not supported")
            if len(inputs) < 2 or inputs[1] not in self._buffer_of:
                refuse("pads must be a constant initializer")
            if len(inputs) > 2 and inputs[2] and inputs[2] not in self._buffer_of:
                refuse("constant_value must be a constant initializer")
            if len(inputs) > 3 and inputs[3]:
                refuse("the axes input is not supported")
        if op == "Conv" and (inputs[1] not in self._buffer_of or getattr(self, self._buffer_of[inputs[1]]).dim() != 4):
            refuse("only 2-D convolutions with constant weights are supported")
        if op in ("MaxPool", "AveragePool") and len(attrs.get("kernel_shape", [])) != 2:
            refuse("only 2-D pooling is supported")
        if op == "Softmax" and self._opset < 13:
            refuse(f"opset {self._opset} Softmax (flattening semantics) is not supported; re-export with opset >= 13")
        if op == "Softmax" and "axis" not in attrs:
            attrs["axis"] = -1  # opset >= 13 default
        if op == "Reshape":
            if len(inputs) < 2 or inputs[1] not in self._buffer_of:
                refuse("the shape must be a constant (export with fixed shapes, or use Flatten)")
            if attrs.get("allowzero", 0):
                refuse("allowzero = 1 is not supported")
        if op == "BatchNormalization":
            if attrs.get("training_mode", 0):
                refuse("training_mode = 1 is not supported (export the model in eval mode)")
            if len(inputs) != 5 or any(i not in self._buffer_of for i in inputs[1:]):
                refuse("scale, bias, mean and variance must be constant initializers")
        if op == "Transpose" and "perm" not in attrs:
            refuse("a perm attribute is required")
        if op == "Concat" and "axis" not in attrs:
            refuse("an axis attribute is required")

    # ---- execution -------------------------------------------------------------------------------

    def _value(self, env: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        if name in env:
            return env[name]
        return getattr(self, self._buffer_of[name])

    def forward(
        self, x: torch.Tensor, capture: Iterable[str] = ()
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the graph on ``x``; with ``capture`` also return those intermediate values by name."""
        wanted = set(capture)
        env: dict[str, torch.Tensor] = {self.input_name: x}
        for op, inputs, outputs, attrs in self._nodes:
            args = [self._value(env, i) if i else None for i in inputs]
            env[outputs[0]] = _OPS[op](args, attrs)
        out = env[self.output_name]
        if not wanted:
            return out
        unknown = wanted - env.keys()
        if unknown:
            raise KeyError(f"{self.source}: no values named {sorted(unknown)}")
        return out, {k: env[k] for k in capture}


# ---- op implementations (ONNX semantics, NCHW) ---------------------------------------------------


def _conv(args: list, a: dict) -> torch.Tensor:
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    nd = w.dim() - 2
    begins, ends = _split_pads(a.get("pads"), nd)
    strides = a.get("strides", [1] * nd)
    dil = a.get("dilations", [1] * nd)
    group = a.get("group", 1)
    if begins == ends:
        return F.conv2d(x, w, b, stride=strides, padding=begins, dilation=dil, groups=group)
    return F.conv2d(F.pad(x, _torch_pad(begins, ends)), w, b, stride=strides, dilation=dil, groups=group)


def _pool(kind: str) -> Callable[[list, dict], torch.Tensor]:
    def run(args: list, a: dict) -> torch.Tensor:
        x = args[0]
        k = a["kernel_shape"]
        strides = a.get("strides", [1] * len(k))
        pads = _split_pads(a.get("pads"), len(k))[0]
        ceil = bool(a.get("ceil_mode", 0))
        if kind == "max":
            return F.max_pool2d(x, k, strides, pads, ceil_mode=ceil)
        return F.avg_pool2d(x, k, strides, pads, ceil_mode=ceil, count_include_pad=bool(a.get("count_include_pad", 0)))

    return run


def _pad(args: list, a: dict) -> torch.Tensor:
    x, pads = args[0], [int(p) for p in args[1].tolist()]
    value = float(args[2].reshape(-1)[0]) if len(args) > 2 and args[2] is not None else 0.0
    begins, ends = pads[: x.dim()], pads[x.dim() :]
    return F.pad(x, _torch_pad(begins, ends), mode="constant", value=value)


def _gemm(args: list, a: dict) -> torch.Tensor:
    A, B = args[0], args[1]
    if a.get("transA", 0):
        A = A.transpose(0, 1)
    if a.get("transB", 0):
        B = B.transpose(0, 1)
    out = a.get("alpha", 1.0) * (A @ B)
    if len(args) > 2 and args[2] is not None:
        out = out + a.get("beta", 1.0) * args[2]
    return out


def _batch_norm(args: list, a: dict) -> torch.Tensor:
    x, scale, bias, mean, var = args
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=float(a.get("epsilon", 1e-5)))


def _reshape(args: list, a: dict) -> torch.Tensor:
    x, shape = args[0], [int(s) for s in args[1].tolist()]
    # ONNX: 0 copies the input's dimension (allowzero = 0), -1 is inferred.
    return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(shape)])


def _flatten(args: list, a: dict) -> torch.Tensor:
    x = args[0]
    axis = a.get("axis", 1) % (x.dim() + 1) if a.get("axis", 1) < 0 else a.get("axis", 1)
    lead = int(np.prod(x.shape[:axis])) if axis > 0 else 1
    return x.reshape(lead, -1)


_OPS: dict[str, Callable[[list, dict], torch.Tensor]] = {
    "Conv": _conv,
    "Mul": lambda args, a: args[0] * args[1],
    "Add": lambda args, a: args[0] + args[1],
    "Relu": lambda args, a: F.relu(args[0]),
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": lambda args, a: args[0].mean(dim=tuple(range(2, args[0].dim())), keepdim=True),
    "Pad": _pad,
    "Gemm": _gemm,
    "Flatten": _flatten,
    "Softmax": lambda args, a: F.softmax(args[0], dim=a.get("axis", -1)),
    "BatchNormalization": _batch_norm,
    "Sigmoid": lambda args, a: torch.sigmoid(args[0]),
    "Tanh": lambda args, a: torch.tanh(args[0]),
    "LeakyRelu": lambda args, a: F.leaky_relu(args[0], float(a.get("alpha", 0.01))),
    "Reshape": _reshape,
    "MatMul": lambda args, a: torch.matmul(args[0], args[1]),
    "Transpose": lambda args, a: args[0].permute(*[int(p) for p in a["perm"]]),
    "Concat": lambda args, a: torch.cat(args, dim=int(a["axis"])),
    "Identity": lambda args, a: args[0],
    "Constant": lambda args, a: torch.empty(0),  # folded into buffers at load time, never run
}
assert set(_OPS) == ALLOWED_OPS
