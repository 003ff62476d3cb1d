"""The MAGEC loss (paper Eq. 2): image-latent consistency plus image-latent *edit* consistency.

    L_MAGEC(z, x) = L_F(LinkNet(z), d) + 1/|E| * sum_i L_F(LinkNet(e_i(z)), d_{e_i})

with d = F(x) computed once per image, and for every attribute two InterfaceGAN edits: *add*
(z + a n, descriptor with the attribute present) and *remove* (z - a n, attribute absent). For a
continuous attribute the descriptor is shifted by the amount the edit moves it (a times the editor's
calibrated units per step). All edits of all attributes are one batched tensor operation: codes
(B, E, L) -> LinkNet -> (B, E, D), so 40 attributes cost about as much as one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from magec.describers.base import DescriptorLayout, descriptor_loss
from magec.errors import MagecError
from magec.latent.interfacegan import InterfaceGANEditor
from magec.latent.kinds import MAGEC_EDITORS
from magec.latent.linknet import LinkNet
from magec.latent.styleflow import StyleFlowEditor, linknet_attributes


class MagecLoss(nn.Module):
    """Per-image L_MAGEC for codes (B, L), given F's descriptors (B, D) prepared once by ``targets``."""

    def __init__(
        self,
        linknet: LinkNet,
        editor: InterfaceGANEditor,
        amount: float | None = None,
        attributes: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.linknet = linknet
        self.layout: DescriptorLayout = linknet.layout
        names = attributes or editor.operations()
        index = [editor.index(n) for n in names]
        amount = editor.default_amount if amount is None else float(amount)
        self.attributes = list(names)
        directions = editor.directions[index]
        # E = 2 * attributes edits: rows [add_0, remove_0, add_1, remove_1, ...]
        self.register_buffer("edit_directions", directions.repeat_interleave(2, dim=0))
        signs = torch.tensor([1.0, -1.0]).repeat(len(index)).to(directions)
        self.register_buffer("edit_amounts", signs * amount)
        self.register_buffer("units_per_step", editor.units_per_step[index].to(directions))

    @property
    def n_edits(self) -> int:
        return self.edit_directions.shape[0]

    @torch.no_grad()
    def targets(self, descriptor: torch.Tensor) -> torch.Tensor:
        """d_{e_i} for every edit: (B, D) -> (B, E, D). Computed once per image, outside the optimisation loop."""
        out = []
        for k, name in enumerate(self.attributes):
            attr = self.layout.attribute(name)
            for sign in (1.0, -1.0):
                amount = (
                    sign
                    if attr.kind == "binary"
                    else sign * float(self.edit_amounts[0].abs()) * float(self.units_per_step[k])
                )
                out.append(self.layout.edit_target(descriptor, name, amount))
        return torch.stack(out, dim=1)

    def edited_codes(self, latents: torch.Tensor) -> torch.Tensor:
        """e_i(z) for all edits at once: (B, L) -> (B, E, L)."""
        return latents[:, None, :] + self.edit_amounts[None, :, None] * self.edit_directions[None, :, :]

    def forward(self, latents: torch.Tensor, descriptor: torch.Tensor, edited_targets: torch.Tensor) -> torch.Tensor:
        """Per-image loss (B,) for flattened codes ``latents`` (B, L)."""
        consistency = descriptor_loss(self.layout, self.linknet(latents), descriptor, reduce_batch=False)
        edits = descriptor_loss(
            self.layout, self.linknet(self.edited_codes(latents)), edited_targets, reduce_batch=False
        )
        return consistency + edits.mean(1)


class StyleFlowMagecLoss(MagecLoss):
    """L_MAGEC with StyleFlow's edits as the e_i of Eq. 2 (the paper only needs e_i differentiable in z).

    For every attribute, *add* and *remove* edits change its StyleFlow condition by +/- ``amount`` standard
    deviations (clamped to the training range), flowing each code back to its base under the current
    attributes (read off LinkNet, so the whole edit is a function of z) and forward under the edited ones.
    The ODE solve is differentiated through (torchdiffeq's odeint). All 2 x attributes edits of a batch are
    one solve of B x E codes. Targets d_{e_i} follow the InterfaceGAN loss: binary attributes present /
    absent, continuous ones shifted by the condition change in natural units.
    """

    def __init__(
        self,
        linknet: LinkNet,
        editor: StyleFlowEditor,
        amount: float | None = None,
        attributes: list[str] | None = None,
    ) -> None:
        nn.Module.__init__(self)
        self.linknet = linknet
        self.layout = linknet.layout
        self.editor = editor
        names = attributes or editor.operations()
        index = [editor.index(n) for n in names]
        amount = editor.default_amount if amount is None else float(amount)
        self.attributes = list(names)
        self.edit_index = [i for i in index for _ in (1.0, -1.0)]
        signs = torch.tensor([1.0, -1.0]).repeat(len(index))
        self.register_buffer("edit_amounts", signs * amount)
        self.register_buffer("units_per_step", editor.units_per_step[index].detach().clone().float())

    @property
    def n_edits(self) -> int:
        return len(self.edit_index)

    def to(self, *args, **kwargs) -> StyleFlowMagecLoss:  # the flow lives outside the module tree
        super().to(*args, **kwargs)
        self.editor.to(self.edit_amounts.device)
        return self

    def edited_codes(self, latents: torch.Tensor) -> torch.Tensor:
        """e_i(z) for all edits at once: (B, L) -> (B, E, L), differentiable in ``latents``."""
        b, e = latents.shape[0], self.n_edits
        flow = self.editor.flow
        current = self.editor.current_attributes(latents)  # (B, A), a function of z through LinkNet
        step = torch.zeros(e, current.shape[1], dtype=current.dtype, device=current.device)
        step[torch.arange(e), torch.tensor(self.edit_index)] = self.edit_amounts.to(current) * flow.attr_std[
            self.edit_index
        ].to(current)
        lo, hi = flow.attr_min.to(current), flow.attr_max.to(current)
        target = torch.minimum(torch.maximum(current[:, None, :] + step[None], lo), hi)  # (B, E, A)
        codes = latents[:, None, :].expand(b, e, latents.shape[1]).reshape(b * e, -1)
        moved = flow.from_base(flow.to_base(codes, current.repeat_interleave(e, dim=0)), target.reshape(b * e, -1))
        return moved.reshape(b, e, -1)


def build_magec_loss(
    pack: Any, editor: str = "interfacegan", amount: float | None = None, attributes: list[str] | None = None
) -> MagecLoss:
    """The MAGEC loss of ``pack`` with its edits from ``editor`` (``interfacegan``, the paper's, or ``styleflow``)."""
    if editor == InterfaceGANEditor.kind:
        return MagecLoss(pack.linknet, pack.interfacegan, amount, attributes)
    if editor == StyleFlowEditor.kind:
        if pack.styleflow is None:
            raise MagecError(
                "--magec-editor styleflow: this pack has no StyleFlow editor (prepared with --no-styleflow)"
            )
        return StyleFlowMagecLoss(
            pack.linknet, StyleFlowEditor(pack.styleflow, linknet_attributes(pack.linknet)), amount, attributes
        )
    raise MagecError(f"unknown MAGEC editor {editor!r}; use one of: {', '.join(MAGEC_EDITORS)}")
