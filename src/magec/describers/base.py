"""The paper's F: a pretrained network image -> descriptor d, with the loss L_F it was trained with.

A descriptor is a vector of *probabilities* made of heads:

- ``categorical`` heads (softmax over ``size`` classes, trained with cross-entropy), e.g. dlib's
  gender (2 classes) or age (81 classes) networks;
- ``binary`` heads (one sigmoid each, trained with binary cross-entropy), e.g. CelebA's 40 attributes.

LinkNet predicts *logits* in the same layout, and is trained with exactly L_F (``descriptor_loss``)
against F's probabilities, as the paper prescribes. Editable *attributes* are scalars read off the
descriptor (``male`` = P(male); ``age`` = expected age); ``edit_target`` says how an edit of an attribute
changes d (the d_{e_i} of Eq. 2).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from magec.devices import module_device


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
        parts = []
        for h in self.heads:
            block = logits[..., self.span(h.name)]
            parts.append(block.softmax(-1) if h.kind == "categorical" else block.sigmoid())
        return torch.cat(parts, dim=-1)

    def attribute_values(self, probs: torch.Tensor) -> torch.Tensor:
        """Probabilities (..., dim) -> attribute values (..., n_attributes)."""
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


def descriptor_loss(
    layout: DescriptorLayout, logits: torch.Tensor, target_probs: torch.Tensor, reduce_batch: bool = True
) -> torch.Tensor:
    """L_F: the loss F was trained with, summed over heads, between predicted logits and target probabilities.

    Categorical heads: cross-entropy with soft targets. Binary heads: binary cross-entropy with logits,
    all binary columns in one operation (CelebA's 40 attributes cost one call, not 40).
    With ``reduce_batch`` the result is averaged over all leading dimensions, otherwise it keeps them.
    """
    total = torch.zeros(logits.shape[:-1], dtype=logits.dtype, device=logits.device)
    binary = layout.binary_columns
    if binary:
        index = torch.tensor(binary, device=logits.device)
        bce = F.binary_cross_entropy_with_logits(
            logits.index_select(-1, index), target_probs.index_select(-1, index), reduction="none"
        )
        total = total + bce.sum(-1)
    for h in layout.heads:
        if h.kind == "categorical":
            sl = layout.span(h.name)
            total = total - (target_probs[..., sl] * F.log_softmax(logits[..., sl], dim=-1)).sum(-1)
    return total.mean() if reduce_batch else total


class Describer(nn.Module, abc.ABC):
    """A frozen, differentiable image describer F.

    ``forward(images)`` takes images in [-1, 1], NCHW, at any resolution (the describer crops and
    resizes as it needs, differentiably) and returns probabilities in ``layout``.
    """

    spec: str = ""
    layout: DescriptorLayout

    @abc.abstractmethod
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Descriptor probabilities, shape (B, layout.dim)."""

    @property
    def device(self) -> torch.device:
        return module_device(self)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate activations usable as an offline perceptual feature space (may be empty)."""
        return []

    def train(self, mode: bool = True) -> Describer:  # always frozen
        return super().train(False)
