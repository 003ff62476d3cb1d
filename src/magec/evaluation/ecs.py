"""The paper's edit-consistency score (Eq. 4 and 5).

For an image x, a projection p, an edit e and its inverse e^-1:
  x_edit = G(e(p(x))),  x_cyc = G(e^-1(p(x_edit))),
  ecs = 2 d(G(p(x)), x_cyc) / (d(G(p(x)), x_edit) + d(x_edit, x_cyc)),  d = LPIPS.
A perfectly cyclic edit scores 0; ecs > 1 means the round trip strays further than one of the two edit
legs. ECS(p) (Eq. 5) is the mean of ecs over the images that lack the edit's target attribute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from magec.evaluation.reconstruction import Distance, perceptual_distance


def ecs_from_distances(d_proj_cyc: torch.Tensor, d_proj_edit: torch.Tensor, d_edit_cyc: torch.Tensor) -> torch.Tensor:
    """Eq. 4 from the three LPIPS legs; NaN where the edit moved nothing (0/0 is undefined, not perfect)."""
    denom = d_proj_edit + d_edit_cyc
    out = 2.0 * d_proj_cyc / denom
    return torch.where(denom > 0, out, torch.full_like(out, float("nan")))


def edit_consistency(
    distance: Distance, projection: torch.Tensor, edited: torch.Tensor, cyclic: torch.Tensor
) -> dict[str, torch.Tensor]:
    """ecs (Eq. 4) for image batches G(p(x)), x_edit, x_cyc, with its three legs (all (B,))."""
    d_pc = perceptual_distance(distance, projection, cyclic)
    d_pe = perceptual_distance(distance, projection, edited)
    d_ec = perceptual_distance(distance, edited, cyclic)
    return {"d_proj_cyc": d_pc, "d_proj_edit": d_pe, "d_edit_cyc": d_ec, "ecs": ecs_from_distances(d_pc, d_pe, d_ec)}


def edit_consistency_score(values: Iterable[float]) -> float:
    """ECS (Eq. 5): the mean ecs over the given images (undefined, NaN, values are left out)."""
    kept = [float(v) for v in values if not math.isnan(float(v))]
    return sum(kept) / len(kept) if kept else float("nan")
