"""Bring your own describer F: an ONNX file or any torch module, plus a layout JSON that says what it outputs.

Spec: ``onnx:MODEL.onnx:LAYOUT.json``. The ONNX graph is run by ``onnx_graph`` (differentiable, allow-listed
ops); a torch module is used as it is (``describer_from_module``). The layout file::

    {
      "format": "magec-describer-layout", "version": 1,
      "input": {"size": [32, 32], "crop": [0.1, 0.2, 0.9, 1.0], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
      "output": "logits",
      "heads": [
        {"name": "bright", "kind": "binary"},
        {"name": "gender", "kind": "categorical", "classes": ["female", "male"], "attribute": "male",
         "positive_class": "male"},
        {"name": "age", "kind": "continuous", "class_values": [5, 15, 25, 35, 45, 55, 65]}
      ]
    }

- ``input.size`` is [height, width] of the model's input; ``crop`` is the box [left, top, right, bottom] of the
  generator image it sees, as fractions of the width and height (cut and resized differentiably, antialiased);
  the crop's pixels are in [0, 1] and then normalised as ``(x - mean) / std`` per RGB channel.
- ``output``: whether the model returns ``logits`` (magec applies a sigmoid per binary head, a softmax per
  categorical/continuous head) or already ``probabilities``.
- ``heads``, in the order of the model's output columns: ``binary`` (one column, an attribute of the head's name
  or ``attribute``), ``categorical`` (one column per class; with ``positive_class`` it gives a binary attribute,
  P(that class)), ``continuous`` (one column per value of ``class_values``, increasing; the attribute is the
  expected value, as for dlib's age). A regression output cannot be a descriptor of probabilities: bin it.

The file is checked strictly (unknown keys, types, NaN, names, the model's output width) with one-line errors.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from magec.describers.base import Attribute, Describer, DescriptorLayout, Head
from magec.errors import MagecError, file_error

LAYOUT_FORMAT = "magec-describer-layout"
LAYOUT_VERSION = 1

_TOP_KEYS = {"format", "version", "input", "output", "heads"}
_INPUT_KEYS = {"size", "crop", "mean", "std"}
_HEAD_KEYS = {
    "binary": {"name", "kind", "attribute"},
    "categorical": {"name", "kind", "classes", "attribute", "positive_class"},
    "continuous": {"name", "kind", "class_values", "attribute"},
}


@dataclass(frozen=True)
class ModelLayout:
    """A parsed layout file: the model's input (size, crop, normalisation) and the descriptor it produces."""

    size: tuple[int, int]
    crop: tuple[float, float, float, float]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    outputs_are_logits: bool
    descriptor: DescriptorLayout


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_layout(data: Any, source: str | Path = "layout") -> ModelLayout:
    """Check a layout dict (as read from JSON) and build the ModelLayout; each problem is one line naming ``source``."""

    def bad(problem: str) -> MagecError:
        return file_error(source, f"describer layout: {problem}")

    def obj(value: Any, where: str, allowed: set[str], required: set[str]) -> dict:
        if not isinstance(value, dict):
            raise bad(f"{where} must be an object, not {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise bad(f"unknown key {unknown[0]!r} in {where} (allowed: {', '.join(sorted(allowed))})")
        missing = sorted(required - set(value))
        if missing:
            raise bad(f"{where} misses {missing[0]!r}")
        return value

    def number(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(f"{where} must be a number, not {type(value).__name__}")
        if not math.isfinite(value):
            raise bad(f"{where} must be finite, not {value}")
        return float(value)

    def numbers(value: Any, where: str, length: int | None = None) -> list[float]:
        if not isinstance(value, list) or (length is not None and len(value) != length):
            raise bad(f"{where} must be a list of {length if length is not None else 'some'} numbers")
        return [number(v, f"{where}[{i}]") for i, v in enumerate(value)]

    def text(value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise bad(f"{where} must be a non-empty string")
        return value

    top = obj(data, "the file", _TOP_KEYS, _TOP_KEYS)
    if top["format"] != LAYOUT_FORMAT:
        raise bad(f"format must be {LAYOUT_FORMAT!r}, not {top['format']!r}")
    if top["version"] != LAYOUT_VERSION or isinstance(top["version"], bool):
        raise bad(f"version {top['version']!r} is not supported (this magec reads version {LAYOUT_VERSION})")
    inp = obj(top["input"], "input", _INPUT_KEYS, _INPUT_KEYS)
    size = inp["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(type(s) is int and 1 <= s <= 4096 for s in size)):
        raise bad("input.size must be [height, width], two integers between 1 and 4096")
    crop = numbers(inp["crop"], "input.crop", 4)
    left, top_, right, bottom = crop
    if not (0.0 <= left < right <= 1.0 and 0.0 <= top_ < bottom <= 1.0):
        raise bad(
            f"input.crop {crop} must be [left, top, right, bottom] fractions, 0 <= left < right <= 1 (same vertically)"
        )
    mean = numbers(inp["mean"], "input.mean", 3)
    std = numbers(inp["std"], "input.std", 3)
    if any(s <= 0 for s in std):
        raise bad(f"input.std {std} must be positive")
    if top["output"] not in ("logits", "probabilities"):
        raise bad(f"output must be 'logits' or 'probabilities', not {top['output']!r}")
    if not isinstance(top["heads"], list) or not top["heads"]:
        raise bad("heads must be a non-empty list")

    heads: list[Head] = []
    attributes: list[Attribute] = []
    for i, raw in enumerate(top["heads"]):
        where = f"heads[{i}]"
        kind = raw.get("kind") if isinstance(raw, dict) else None
        if kind not in _HEAD_KEYS:
            raise bad(f"{where}.kind must be one of binary, categorical, continuous, not {kind!r}")
        required = {"name", "kind"} | ({"classes"} if kind == "categorical" else set())
        required |= {"class_values"} if kind == "continuous" else set()
        head = obj(raw, where, _HEAD_KEYS[kind], required)
        name = text(head["name"], f"{where}.name")
        attribute = text(head["attribute"], f"{where}.attribute") if "attribute" in head else name
        if kind == "binary":
            heads.append(Head(name, "binary", 1))
            attributes.append(Attribute(attribute, name, "binary"))
        elif kind == "categorical":
            classes = head["classes"]
            if not isinstance(classes, list) or len(classes) < 2:
                raise bad(f"{where}.classes must list at least 2 class names")
            classes = [text(c, f"{where}.classes[{k}]") for k, c in enumerate(classes)]
            if len(set(classes)) != len(classes):
                raise bad(f"{where}.classes has duplicates")
            heads.append(Head(name, "categorical", len(classes)))
            if "positive_class" in head:
                positive = text(head["positive_class"], f"{where}.positive_class")
                if positive not in classes:
                    raise bad(f"{where}.positive_class {positive!r} is not one of its classes")
                attributes.append(Attribute(attribute, name, "binary", positive_class=classes.index(positive)))
            elif "attribute" in head:
                raise bad(f"{where}.attribute needs a positive_class")
        else:
            values = numbers(head["class_values"], f"{where}.class_values")
            if len(values) < 2 or any(b <= a for a, b in zip(values, values[1:])):
                raise bad(f"{where}.class_values must be at least 2 strictly increasing numbers")
            heads.append(Head(name, "categorical", len(values), class_values=tuple(values)))
            attributes.append(Attribute(attribute, name, "continuous"))
    for label, names in (("head", [h.name for h in heads]), ("attribute", [a.name for a in attributes])):
        dup = sorted(n for n, k in Counter(names).items() if k > 1)  # linear: a layout may hold 10^5 heads
        if dup:
            raise bad(f"{label} name {dup[0]!r} is used twice")
    if not attributes:
        raise bad("no editable attribute: give a binary or continuous head, or a categorical one a positive_class")
    return ModelLayout(
        (size[0], size[1]),
        (left, top_, right, bottom),
        (mean[0], mean[1], mean[2]),
        (std[0], std[1], std[2]),
        top["output"] == "logits",
        DescriptorLayout(tuple(heads), tuple(attributes)),
    )


#: A layout file names a few heads; anything this large is refused before it is parsed.
MAX_LAYOUT_BYTES = 1 << 20


def read_layout(path: str | Path) -> ModelLayout:
    """Read and check a layout JSON file (NaN/Infinity literals, duplicate keys and bad UTF-8 are refused)."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "missing describer layout file")
    if path.stat().st_size > MAX_LAYOUT_BYTES:
        raise file_error(path, f"describer layout of {path.stat().st_size} bytes, more than {MAX_LAYOUT_BYTES}")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
        found = dict(pairs)
        if len(found) != len(pairs):  # linear, however many keys
            dup = sorted(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
            raise ValueError(f"duplicate key {dup[0]!r}")
        return found

    try:
        data = json.loads(
            path.read_bytes().decode("utf-8"), parse_constant=_refuse_constant, object_pairs_hook=no_duplicates
        )
    except RecursionError:
        raise file_error(path, "describer layout: nested too deeply to be a layout") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise file_error(path, f"describer layout: not valid JSON ({str(exc).splitlines()[0][:200]})") from None
    return parse_layout(data, path)


def crop_box(images: torch.Tensor, box: tuple[float, float, float, float], size: tuple[int, int]) -> torch.Tensor:
    """Cut ``box`` (left, top, right, bottom fractions) out of NCHW images and resize to ``size``, differentiably.

    Resampled bilinearly at about the box's own pixel size first, then resized with an antialiased filter, so
    shrinking never skips pixels (the same scheme as ``faces.chips.crop_chip``).
    """
    b, c, h, w = images.shape
    left, top, right, bottom = box
    theta = torch.tensor(
        [[right - left, 0.0, left + right - 1.0], [0.0, bottom - top, top + bottom - 1.0]],
        dtype=images.dtype,
        device=images.device,
    )
    crop_h = max(size[0], min(256, int(round((bottom - top) * h))))
    crop_w = max(size[1], min(256, int(round((right - left) * w))))
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, c, crop_h, crop_w], align_corners=False)
    crop = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if (crop_h, crop_w) == tuple(size):
        return crop
    return F.interpolate(crop, size=size, mode="bilinear", antialias=True, align_corners=False)


class TorchModuleDescriber(Describer):
    """F = a frozen torch module (images cropped and normalised per ``ModelLayout``) read through its layout.

    ``forward`` takes images in [-1, 1] (NCHW, any resolution) and returns probabilities in ``self.layout``.
    ``files`` holds the SHA-256 of the files the describer was read from (recorded in packs).
    """

    def __init__(self, module: nn.Module, layout: ModelLayout, spec: str = "", source: str = "module") -> None:
        super().__init__()
        self.net = module
        self.model_layout = layout
        self.layout = layout.descriptor
        self.spec = spec or f"module:{type(module).__name__}"
        self.source = source
        self.files: dict[str, str] = {}
        self.register_buffer("mean", torch.tensor(layout.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(layout.std).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()
        weights = [*module.parameters(), *module.buffers()]
        if weights:  # follow the module's device (a user's module may already sit on a GPU)
            self.to(weights[0].device)
        self._check_width()

    def _check_width(self) -> None:
        """Run one dummy image so a model whose output does not match the layout fails now, with its name."""
        try:
            with torch.no_grad():
                out = self.net(torch.zeros(1, 3, *self.model_layout.size, device=self.mean.device))
        except RuntimeError as exc:
            raise file_error(
                self.source,
                f"does not accept {self.model_layout.size[0]}x{self.model_layout.size[1]} RGB inputs "
                f"({str(exc).splitlines()[0][:200]})",
            ) from None
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != self.layout.dim:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise file_error(
                self.source,
                f"model output has shape {shape}, the layout's heads need (batch, {self.layout.dim}) columns",
            )

    def net_input(self, images: torch.Tensor) -> torch.Tensor:
        """The cropped, resized and normalised batch the module sees."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.spec}: expected RGB images (B, 3, H, W), got {tuple(images.shape)}")
        crop = crop_box(images, self.model_layout.crop, self.model_layout.size)
        return ((crop + 1.0) * 0.5 - self.mean.to(crop)) / self.std.to(crop)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.net(self.net_input(images))
        if self.model_layout.outputs_are_logits:
            return self.layout.probabilities(out)
        return out

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Activation maps (4-D) of the network, what ``--perceptual describer-features`` compares.

        An ONNX graph gives its Relu/LeakyRelu outputs; a torch module the outputs of its activation modules
        (or, if it has none, of its 2-D convolutions), captured with forward hooks during one pass.
        """
        from magec.describers.onnx_graph import OnnxGraphModule

        x = self.net_input(images)
        if isinstance(self.net, OnnxGraphModule):
            if not self.net.activation_values:
                return []
            _, maps = self.net(x, capture=self.net.activation_values)
            return [m for m in maps.values() if m.dim() == 4]
        leaves = [m for m in self.net.modules() if isinstance(m, _ACTIVATIONS)]
        leaves = leaves or [m for m in self.net.modules() if isinstance(m, nn.Conv2d)]
        captured: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: captured.append(out)) for m in leaves]
        try:
            self.net(x)
        finally:
            for h in hooks:
                h.remove()
        return [m for m in captured if isinstance(m, torch.Tensor) and m.dim() == 4]


_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.PReLU)


def describer_from_module(
    module: nn.Module, layout: ModelLayout | dict | str | Path, spec: str = ""
) -> TorchModuleDescriber:
    """Wrap any torch module (images in, one row of outputs per image out) as a describer F.

    ``layout`` is a ``ModelLayout``, a layout dict or the path of a layout JSON file (see the module docstring).
    A pack prepared with such a describer records ``spec`` (default ``module:<class name>``); reload it with the
    same module through ``magec.pipeline.assemble_pipeline``.
    """
    if isinstance(layout, (str, Path)):
        layout = read_layout(layout)
    elif isinstance(layout, dict):
        layout = parse_layout(layout)
    return TorchModuleDescriber(module, layout, spec=spec)


def load_onnx_describer(arg: str) -> TorchModuleDescriber:
    """``onnx:MODEL.onnx:LAYOUT.json`` -> the describer; the spec keeps absolute paths, ``files`` their SHA-256."""
    from magec.describers.onnx_graph import OnnxGraphModule

    model_arg, sep, layout_arg = arg.rpartition(":")
    if not sep or not model_arg or not layout_arg:
        raise MagecError("--describer onnx:MODEL.onnx:LAYOUT.json needs the model file and the layout file")
    model_path, layout_path = Path(model_arg).expanduser(), Path(layout_arg).expanduser()
    if not model_path.is_file():
        raise file_error(model_path, "missing ONNX file")
    layout = read_layout(layout_path)
    net = OnnxGraphModule(model_path)
    spec = f"onnx:{model_path.resolve()}:{layout_path.resolve()}"
    describer = TorchModuleDescriber(net, layout, spec=spec, source=str(model_path))
    describer.files = {"model": _sha256(model_path), "layout": _sha256(layout_path)}
    return describer
