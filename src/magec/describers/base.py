"""The paper's F: a pretrained network image -> descriptor d, with the loss L_F it was trained with.

A descriptor is a vector of *probabilities* made of heads:

- ``categorical`` heads (softmax over ``size`` classes, trained with cross-entropy), e.g. dlib's
  gender (2 classes) or age (81 classes) networks;
- ``binary`` heads (one sigmoid each, trained with binary cross-entropy), e.g. CelebA's 40 attributes.

LinkNet predicts *logits* in the same layout, and is trained with exactly L_F (``descriptor_loss``)
against F's probabilities, as the paper prescribes. Editable *attributes* are scalars read off the
descriptor (``male`` = P(male); ``age`` = expected age); ``edit_target`` says how an edit of an attribute
changes d (the d_{e_i} of Eq. 2). The layout classes live in the torch-free ``describers.layout``
(re-exported here), so that layout files can be checked without loading torch.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import nn

from magec.describers.layout import Attribute, DescriptorLayout, Head, shift_distribution
from magec.devices import module_device

__all__ = ["Attribute", "Describer", "DescriptorLayout", "Head", "descriptor_loss", "shift_distribution"]


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
