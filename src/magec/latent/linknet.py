"""LinkNet: the simplest link from a latent code to the image descriptor (paper Sec. 3.1).

A single linear layer latent -> descriptor logits, trained with exactly the loss F was trained with
(``descriptor_loss``), against F's probabilities on generated images. Kept linear on purpose: it must not
re-learn part of the generator, only expose what the latent already encodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from magec.describers.base import DescriptorLayout, descriptor_loss


@dataclass
class LinkNetConfig:
    """Full-batch L-BFGS on L_F (a convex problem for a linear model) with a little weight decay."""

    max_iter: int = 200
    weight_decay: float = 1e-4
    #: Tolerance (in attribute units, e.g. years) under which a continuous prediction counts as agreeing with F.
    continuous_tolerance: float = 5.0


class LinkNet(nn.Module):
    """Linear latent -> descriptor logits; ``LinkNet.fit`` builds a fitted one (see ``magec.latent``)."""

    def __init__(self, latent_dim: int, layout: DescriptorLayout) -> None:
        super().__init__()
        self.layout = layout
        self.latent_dim = latent_dim
        self.linear = nn.Linear(latent_dim, layout.dim)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Descriptor logits for codes of shape (..., latent_dim)."""
        return self.linear(latents)

    @classmethod
    def fit(
        cls,
        latents: torch.Tensor,
        target_probs: torch.Tensor,
        layout: DescriptorLayout,
        config: LinkNetConfig | None = None,
        progress: bool = True,
    ) -> LinkNet:
        """A LinkNet trained on (N, latent_dim) codes and F's (N, dim) probabilities with L_F.

        Deterministic (zero start, full-batch L-BFGS): nothing random, so nothing to seed.
        """
        config = config or LinkNetConfig()
        self = cls(latents.shape[1], layout)
        nn.init.zeros_(self.linear.weight)
        with torch.no_grad():  # start from the marginal distribution of F's outputs
            self.linear.bias.copy_(_marginal_logits(self.layout, target_probs))
        # Standardise inputs inside the optimisation for conditioning; fold back into the weights after.
        mean, std = latents.mean(0), latents.std(0).clamp_min(1e-6)
        x = (latents - mean) / std
        weight = torch.zeros_like(self.linear.weight, requires_grad=True)
        bias = self.linear.bias.detach().clone().requires_grad_(True)
        optim = torch.optim.LBFGS(
            [weight, bias], lr=1.0, max_iter=config.max_iter, history_size=20, line_search_fn="strong_wolfe"
        )
        bar = tqdm(total=config.max_iter, desc="fit LinkNet", disable=not progress, leave=False)

        def closure() -> torch.Tensor:
            optim.zero_grad(set_to_none=True)
            loss = (
                descriptor_loss(self.layout, x @ weight.T + bias, target_probs)
                + config.weight_decay * weight.square().sum()
            )
            loss.backward()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            return loss

        with torch.enable_grad():
            optim.step(closure)
        bar.close()
        with torch.no_grad():
            w = weight / std
            self.linear.weight.copy_(w)
            self.linear.bias.copy_(bias - w @ mean)
        self.requires_grad_(False)
        return self

    @torch.no_grad()
    def predict_proba(self, latents: torch.Tensor) -> torch.Tensor:
        return self.layout.probabilities(self(latents))

    @torch.no_grad()
    def agreement(
        self, latents: torch.Tensor, target_probs: torch.Tensor, tolerance: float = 5.0
    ) -> dict[str, dict[str, float]]:
        """Per attribute, how often LinkNet agrees with F on these samples, with the majority-class baseline.

        Binary attributes: accuracy of the thresholded probability (0.5) against F's decision.
        Continuous attributes: fraction within ``tolerance`` units of F's value, the mean absolute error and
        Pearson r; the baseline predicts F's mean for everyone.
        """
        predicted = self.layout.attribute_values(self.predict_proba(latents))
        truth = self.layout.attribute_values(target_probs)
        report: dict[str, dict[str, float]] = {}
        for i, attr in enumerate(self.layout.attributes):
            p, t = predicted[:, i], truth[:, i]
            if attr.kind == "binary":
                positive = (t > 0.5).float().mean().item()
                report[attr.name] = {
                    "agreement": ((p > 0.5) == (t > 0.5)).float().mean().item(),
                    "majority_baseline": max(positive, 1.0 - positive),
                }
            else:
                baseline = ((t - t.mean()).abs() <= tolerance).float().mean().item()
                r = torch.corrcoef(torch.stack([p, t]))[0, 1].item() if len(p) > 1 else float("nan")
                report[attr.name] = {
                    "agreement": ((p - t).abs() <= tolerance).float().mean().item(),
                    "majority_baseline": baseline,
                    "mae": (p - t).abs().mean().item(),
                    "pearson_r": r,
                }
        return report


def _marginal_logits(layout: DescriptorLayout, probs: torch.Tensor) -> torch.Tensor:
    """Logits whose probabilities equal the mean of ``probs`` per head (a sensible bias initialisation)."""
    mean = probs.mean(0).clamp(1e-6, 1 - 1e-6)
    parts = []
    for h in layout.heads:
        block = mean[layout.span(h.name)]
        parts.append(block.log() if h.kind == "categorical" else torch.logit(block))
    return torch.cat(parts)
