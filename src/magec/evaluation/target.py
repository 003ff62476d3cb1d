"""The paper's "improved target" score t of an attribute edit (Table 2).

A classifier reads the edited attribute on the image before and after the edit; t is the net change
of that attribute's probability in the direction the edit asked for, floored at 0 so t is in [0, 1] as
the paper defines it (a failed or reversed edit scores 0). The signed change is kept as well, so a
report can show edits that went the wrong way rather than hide them.

Continuous attributes (e.g. age, an expectation over class values) are mapped to [0, 1] by the range
of their class values before differencing, so they share the probability scale.
"""

from __future__ import annotations

import torch

from magec.describers.base import DescriptorLayout


def signed_target_change(before: torch.Tensor, after: torch.Tensor, direction: torch.Tensor | float) -> torch.Tensor:
    """direction * (after - before): positive when the attribute moved the way the edit asked."""
    return torch.as_tensor(direction, dtype=before.dtype) * (after - before)


def improved_target(before: torch.Tensor, after: torch.Tensor, direction: torch.Tensor | float) -> torch.Tensor:
    """t in [0, 1]: the improvement of the target attribute's probability, floored at 0."""
    return signed_target_change(before, after, direction).clamp(0.0, 1.0)


def attribute_probability(layout: DescriptorLayout, probs: torch.Tensor, attribute: str) -> torch.Tensor:
    """The attribute as a [0, 1] score from descriptor probabilities (B, dim), shape (B,)."""
    idx = layout.attribute_names.index(attribute)
    value = layout.attribute_values(probs)[..., idx]
    a = layout.attribute(attribute)
    if a.kind == "continuous":
        cv = layout.head(a.head).class_values or (0.0, 1.0)
        lo, hi = min(cv), max(cv)
        value = (value - lo) / max(hi - lo, 1e-12)
    return value
