"""InterfaceGAN editor: per attribute, a linear SVM boundary in latent space; edits walk along its unit normal.

As in InterfaceGAN, a continuous attribute (age) is binarised by keeping the top and bottom fractions of
the samples; a binary one is split at probability 0.5. We also calibrate, by least squares, how much the
attribute moves per latent unit along the normal (``units_per_step``): the MAGEC loss uses it to shift
a continuous descriptor (e.g. years of age) by the amount an edit should cause.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.svm import LinearSVC

from magec.describers.base import DescriptorLayout
from magec.latent.editors import DirectionEditor
from magec.latent.kinds import INTERFACEGAN


@dataclass
class InterfaceGANConfig:
    #: Fraction of samples kept at each end to binarise a continuous attribute.
    extreme_fraction: float = 0.3
    svm_c: float = 1.0
    #: Default edit step, in standard deviations of the latent projections onto the normal.
    default_sigmas: float = 3.0


class InterfaceGANEditor(DirectionEditor):
    """Unit normals (A, L) of per-attribute boundaries; ``edit(z, attr, a) = z + a * n_attr``."""

    traits = INTERFACEGAN
    kind = traits.kind

    def __init__(
        self,
        names: list[str],
        directions: torch.Tensor,
        default_amount: float,
        units_per_step: torch.Tensor,
        svm_accuracy: torch.Tensor,
    ) -> None:
        super().__init__(names, directions, default_amount)
        self.units_per_step = units_per_step
        self.svm_accuracy = svm_accuracy

    @classmethod
    def fit(
        cls,
        latents: torch.Tensor,
        attribute_values: torch.Tensor,
        layout: DescriptorLayout,
        config: InterfaceGANConfig | None = None,
        seed: int = 0,
    ) -> InterfaceGANEditor:
        """Fit one boundary per attribute from (N, L) codes and (N, A) attribute values."""
        config = config or InterfaceGANConfig()
        x = latents.detach().double().cpu().numpy()
        normals, slopes, accuracy = [], [], []
        for i, attr in enumerate(layout.attributes):
            v = attribute_values[:, i].detach().double().cpu().numpy()
            if attr.kind == "binary":
                keep = np.ones(len(v), dtype=bool)
                labels = (v > 0.5).astype(int)
            else:
                lo, hi = np.quantile(v, [config.extreme_fraction, 1.0 - config.extreme_fraction])
                keep = (v <= lo) | (v >= hi)
                labels = (v[keep] >= hi).astype(int)
            if labels.min() == labels.max():
                raise ValueError(f"attribute {attr.name!r}: all samples fall on one side; cannot fit a boundary")
            svm = LinearSVC(C=config.svm_c, dual="auto", max_iter=20000, random_state=seed)
            svm.fit(x[keep], labels)
            accuracy.append(svm.score(x[keep], labels))
            n = svm.coef_[0] / np.linalg.norm(svm.coef_[0])
            normals.append(n)
            proj = (x - x.mean(0)) @ n
            slopes.append(np.polyfit(proj, v, 1)[0])  # attribute units per latent unit along n
        directions = torch.tensor(np.stack(normals), dtype=torch.float32)
        proj_std = float(((latents - latents.mean(0)) @ directions.T).std(0).mean())
        return cls(
            layout.attribute_names,
            directions,
            default_amount=config.default_sigmas * proj_std,
            units_per_step=torch.tensor(slopes, dtype=torch.float32),
            svm_accuracy=torch.tensor(accuracy, dtype=torch.float32),
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "directions": self.directions,
            "units_per_step": self.units_per_step,
            "svm_accuracy": self.svm_accuracy,
            "default_amount": torch.tensor([self.default_amount]),
        }

    @classmethod
    def from_tensors(cls, names: list[str], t: dict[str, torch.Tensor]) -> InterfaceGANEditor:
        return cls(names, t["directions"], float(t["default_amount"][0]), t["units_per_step"], t["svm_accuracy"])

    def to(self, device: torch.device | str) -> InterfaceGANEditor:
        super().to(device)
        self.units_per_step = self.units_per_step.to(device)
        return self
