"""The describer layout file (``LAYOUT.json`` of ``onnx:MODEL.onnx:LAYOUT.json``): read and checked strictly.

The format is described in ``describers.custom``. This module needs no torch, so that a bad layout file is refused
in a fraction of a second, before the model (and torch) is loaded.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magec.describers.layout import Attribute, DescriptorLayout, Head
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
