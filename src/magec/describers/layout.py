"""The descriptor layout: F's heads and the editable attributes read off them, with the arithmetic on descriptors.

Kept free of a module-level torch import, so that a describer layout file can be checked (and refused) without
loading torch; the methods that compute with tensors import it when they run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Head:
    """A block of the descriptor: ``size`` softmax classes, or ``size`` == 1 sigmoid output."""

    name: str
    kind: Literal["categorical", "binary"]
    size: int
    #: Value of each class, for categorical heads read as a continuous attribute (e.g. ages in years).
    class_values: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Attribute:
    """An editable scalar read off one head.

    ``binary``: the probability of ``positive_class`` (categorical head) or of the sigmoid (binary head).
    ``continuous``: the expectation of ``class_values`` under the head's distribution.
    """

    name: str
    head: str
    kind: Literal["binary", "continuous"]
    positive_class: int = 1


@dataclass(frozen=True)
class DescriptorLayout:
    """Heads and attributes of a describer, with slicing helpers."""

    heads: tuple[Head, ...]
    attributes: tuple[Attribute, ...]
    _offsets: dict[str, tuple[int, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        offsets: dict[str, tuple[int, int]] = {}
        start = 0
        for head in self.heads:
            if head.kind == "binary" and head.size != 1:
                raise ValueError(f"binary head {head.name!r} must have size 1 (one sigmoid), not {head.size}")
            offsets[head.name] = (start, start + head.size)
            start += head.size
        object.__setattr__(self, "_offsets", offsets)

    @property
    def binary_columns(self) -> list[int]:
        """Descriptor columns of all binary heads (their L_F is evaluated in one call)."""
        return [self._offsets[h.name][0] for h in self.heads if h.kind == "binary"]

    @property
    def dim(self) -> int:
        return sum(h.size for h in self.heads)

    @property
    def attribute_names(self) -> list[str]:
        return [a.name for a in self.attributes]

    def head(self, name: str) -> Head:
        return next(h for h in self.heads if h.name == name)

    def attribute(self, name: str) -> Attribute:
        for a in self.attributes:
            if a.name == name:
                return a
        raise KeyError(f"unknown attribute {name!r}; known: {', '.join(self.attribute_names)}")

    def span(self, head: str) -> slice:
        lo, hi = self._offsets[head]
        return slice(lo, hi)

    def to_dict(self) -> dict:
        return {
            "heads": [
                {
                    "name": h.name,
                    "kind": h.kind,
                    "size": h.size,
                    "class_values": list(h.class_values) if h.class_values else None,
                }
                for h in self.heads
            ],
            "attributes": [
                {"name": a.name, "head": a.head, "kind": a.kind, "positive_class": a.positive_class}
                for a in self.attributes
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> DescriptorLayout:
        heads = tuple(
            Head(h["name"], h["kind"], int(h["size"]), tuple(h["class_values"]) if h.get("class_values") else None)
            for h in data["heads"]
        )
        attrs = tuple(
            Attribute(a["name"], a["head"], a["kind"], int(a.get("positive_class", 1))) for a in data["attributes"]
        )
        return cls(heads, attrs)

    # ---- descriptor arithmetic -------------------------------------------------------------

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (..., dim) -> probabilities in the same layout (softmax per categorical head)."""
        import torch

        parts = []
        for h in self.heads:
            block = logits[..., self.span(h.name)]
            parts.append(block.softmax(-1) if h.kind == "categorical" else block.sigmoid())
        return torch.cat(parts, dim=-1)

    def attribute_values(self, probs: torch.Tensor) -> torch.Tensor:
        """Probabilities (..., dim) -> attribute values (..., n_attributes)."""
        import torch

        values = []
        for a in self.attributes:
            h = self.head(a.head)
            block = probs[..., self.span(h.name)]
            if a.kind == "binary":
                values.append(block[..., a.positive_class] if h.kind == "categorical" else block[..., 0])
            else:
                if h.class_values is None:
                    raise ValueError(f"continuous attribute {a.name!r} needs class_values on head {h.name!r}")
                cv = torch.tensor(h.class_values, dtype=block.dtype, device=block.device)
                values.append((block * cv).sum(-1))
        return torch.stack(values, dim=-1)

    def captions(self, probs: torch.Tensor, sep: str = "\n") -> list[str]:
        """One short text per row of probabilities (B, dim): binary attributes as probabilities, others rounded."""
        rows = []
        for values in self.attribute_values(probs).tolist():
            parts = [
                f"{a.name} {v:.2f}" if a.kind == "binary" else f"{a.name} {v:.0f}"
                for a, v in zip(self.attributes, values)
            ]
            rows.append(sep.join(parts))
        return rows

    def edit_target(self, probs: torch.Tensor, attribute: str, amount: float) -> torch.Tensor:
        """The descriptor d_e after editing ``attribute`` of ``probs`` (..., dim).

        Binary attributes: ``amount`` > 0 means *add* (attribute present), < 0 *remove* (absent).
        Continuous attributes (a categorical head with class values, e.g. age): the distribution is
        shifted by ``amount`` in class-value units, by linear interpolation between classes.
        """
        import torch

        a = self.attribute(attribute)
        h = self.head(a.head)
        out = probs.clone()
        sl = self.span(h.name)
        if a.kind == "binary":
            present = 1.0 if amount > 0 else 0.0
            if h.kind == "binary":
                out[..., sl] = present
            else:
                block = torch.full_like(out[..., sl], 0.0)
                if h.size == 2:
                    block[..., a.positive_class] = present
                    block[..., 1 - a.positive_class] = 1.0 - present
                else:
                    block[..., a.positive_class] = present
                    if present == 0.0:  # spread the mass over the other classes as F had it
                        rest = probs[..., sl].clone()
                        rest[..., a.positive_class] = 0.0
                        block = rest / rest.sum(-1, keepdim=True).clamp_min(1e-12)
                out[..., sl] = block
            return out
        out[..., sl] = shift_distribution(probs[..., sl], h.class_values or (), amount)
        return out


def shift_distribution(block: torch.Tensor, class_values: tuple[float, ...], amount: float) -> torch.Tensor:
    """Move a categorical distribution over ordered ``class_values`` by ``amount`` value units.

    Each class's mass goes to the position value+amount, split linearly between the two nearest
    classes; mass beyond either end stays at that end. The expectation moves by ``amount`` exactly
    unless mass is clipped at an end.
    """
    import torch

    values = torch.tensor(class_values, dtype=block.dtype, device=block.device)
    target = (values + amount).clamp(values[0], values[-1])
    hi = torch.searchsorted(values, target, right=False).clamp(1, len(values) - 1)
    lo = hi - 1
    span = (values[hi] - values[lo]).clamp_min(1e-12)
    w_hi = ((target - values[lo]) / span).clamp(0, 1)
    w_lo = 1.0 - w_hi
    flat = block.reshape(-1, block.shape[-1])
    res = torch.zeros_like(flat)
    res.index_add_(1, lo, flat * w_lo)
    res.index_add_(1, hi, flat * w_hi)
    return res.reshape(block.shape)
