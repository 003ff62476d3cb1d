"""Run a small ONNX graph as a differentiable torch module.

Pretrained describers sometimes ship only as ONNX files (dlib's age and gender networks do). onnxruntime
cannot give gradients with respect to the input, which LinkNet training and inversion need, so we
translate the graph node by node into torch calls. The translator is deliberately narrow: it knows a
fixed allow-list of ops (what plain CNNs exported from dlib use) and refuses anything else with a
one-line error, rather than guessing at semantics it has not been checked against.

Weights become frozen buffers, so the module follows ``.to(device)`` and never trains. What can be checked without
torch (the file, its declared sizes, the op allow-list, each node's inputs) is done by ``onnx_files`` first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from magec.describers.onnx_files import (
    MAX_ONNX_WEIGHT_BYTES,
    SUPPORTED_OPS,
    check_declared_sizes,
    check_onnx_file,
    node_label,
)
from magec.errors import file_error
from magec.memory import is_out_of_memory

if TYPE_CHECKING:
    import onnx

__all__ = ["ACTIVATION_OPS", "ALLOWED_OPS", "MAX_ONNX_WEIGHT_BYTES", "OnnxGraphModule", "check_declared_sizes"]

#: The ops this translator implements (``onnx_files.OP_INPUTS``, with their inputs); anything else is refused.
ALLOWED_OPS: frozenset[str] = SUPPORTED_OPS

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


class OnnxGraphModule(nn.Module):
    """An ONNX graph (single input, single output, allow-listed ops) executed with torch ops.

    ``forward(x)`` returns the graph output; ``forward(x, capture=[...])`` also returns the named
    intermediate tensors (ONNX value names), for use as feature maps.
    """

    def __init__(self, path: str | Path, model: onnx.ModelProto | None = None) -> None:
        """Translate the graph of ``path``; ``model`` is its ``onnx_files.check_onnx_file`` result if already read."""
        super().__init__()
        import onnx
        from onnx import numpy_helper

        path = Path(path)
        self.source = str(path)
        if model is None:
            model = check_onnx_file(path)  # file, declared sizes, op allow-list, each node's inputs
        graph = model.graph
        if any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph.initializer):
            from onnx.external_data_helper import load_external_data_for_model

            try:
                load_external_data_for_model(model, str(path.parent))
            except Exception as exc:  # missing, short or escaping external files
                raise file_error(path, f"external weights cannot be read ({str(exc).splitlines()[0][:200]})") from None

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
        #: (label, op, inputs, outputs, attributes) of each node to run, in graph order.
        self._nodes: list[tuple[str, str, list[str], list[str], dict]] = []
        known = {self.input_name, *self._buffer_of}
        #: Outputs of activation nodes in graph order (candidate feature maps).
        self.activation_values: list[str] = []
        for index, node in enumerate(graph.node):
            label = node_label(node, index)
            if node.op_type == "Constant" or (node.op_type == "Identity" and node.input[0] in self._buffer_of):
                self._fold_constant(path, node, label)  # becomes a buffer, so Reshape/Conv/Pad see a constant
                known.update(node.output)
                continue
            if node.op_type in ACTIVATION_OPS:
                self.activation_values.append(node.output[0])
            missing = [i for i in node.input if i and i not in known]
            if missing:
                raise file_error(
                    path,
                    f"node {label!r} ({node.op_type}): uses undefined values {missing} "
                    "(graph not topologically sorted?)",
                )
            attrs = _attributes(node)
            self._check_node(path, label, node.op_type, list(node.input), attrs)
            self._nodes.append((label, node.op_type, list(node.input), list(node.output), attrs))
            known.update(node.output)
        if self.output_name not in known:
            raise file_error(path, f"graph output {self.output_name!r} is never produced")
        self.requires_grad_(False)
        self.eval()

    # ---- validation ------------------------------------------------------------------------------

    def _fold_constant(self, path: Path, node, label: str) -> None:
        """A Constant node (its ``value`` tensor, checked by ``onnx_files``) or an Identity of a constant becomes
        a frozen buffer."""
        if node.op_type == "Identity":
            self._buffer_of[node.output[0]] = self._buffer_of[node.input[0]]
            return
        from onnx import numpy_helper

        try:
            array = np.array(numpy_helper.to_array(_attributes(node)["value"]), copy=True)
        except Exception as exc:  # a tensor whose data does not match its dims or type
            raise file_error(
                path, f"node {label!r} (Constant): its value cannot be read ({str(exc).splitlines()[0][:200]})"
            ) from None
        tensor = torch.from_numpy(array)
        if tensor.is_floating_point():
            tensor = tensor.float()
        name = f"w{len(self._buffer_of)}_" + re.sub(r"[^0-9a-zA-Z_]", "_", node.output[0])
        self.register_buffer(name, tensor)
        self._buffer_of[node.output[0]] = name

    def _check_node(self, path: Path, label: str, op: str, inputs: list[str], attrs: dict) -> None:
        """Refuse what the ops below do not implement (the inputs' count was checked by ``onnx_files``)."""

        def refuse(problem: str) -> None:
            raise file_error(path, f"node {label!r} ({op}): {problem}")

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
        for label, op, inputs, outputs, attrs in self._nodes:
            args = [self._value(env, i) if i else None for i in inputs]
            try:
                env[outputs[0]] = _OPS[op](args, attrs)
            except (RuntimeError, IndexError, ValueError, TypeError) as exc:
                if is_out_of_memory(exc):
                    raise
                # shapes the graph's values do not agree on (a Concat axis past the rank, Gemm widths)
                problem = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise file_error(self.source, f"node {label!r} ({op}): {problem}") from exc
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


def _concat(args: list, a: dict) -> torch.Tensor:
    axis, rank = int(a["axis"]), args[0].dim()
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for {rank}-D inputs")
    return torch.cat(args, dim=axis)


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
    "Concat": _concat,
    "Identity": lambda args, a: args[0],
    "Constant": lambda args, a: torch.empty(0),  # folded into buffers at load time, never run
}
assert set(_OPS) == ALLOWED_OPS
