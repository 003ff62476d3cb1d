"""How far each edit is useful: the slider ranges, names and notes a pack records at prepare time.

For every (editor, operation) a slider offers, ``measure_reach`` edits the first ``samples`` of the pack's own
seeded latents at a grid of amounts (``multiples`` of the editor's default amount, both signs) and measures,
with the generator and the describer F only (cheap, no extra network):

- **attribute change**: the mean change of each of F's attributes, divided by the attribute's spread over the
  pack's samples (standardised, as ``magec.entanglement`` reports it);
- **image change**: the mean RMS pixel change of each face, divided by the median RMS distance between two
  unrelated faces of the same samples (1.0: the edit moved a face as far as a different face is).

A side's reach (one for negative amounts, one for positive) is the largest grid amount whose image change stays
at or below ``image_limit`` (the face stays itself: further out, edits turn into other faces or break) and, for an
attribute edit, no further than where F's own attribute saturates (the first amount reaching ``saturation`` of
the side's largest change): past that the slider only breaks the face. The smallest grid amount is always kept.
An edit whose effect at its reach is below ``barely`` standard deviations (and, for components, whose image change
is below ``barely_image``) is flagged as barely moving anything. Components (GANSpace, SeFa) are named after the
attributes they move at the default amount: ``"age +, smile -"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from magec import memory, validation
from magec.describers.base import Describer
from magec.generators.base import Generator
from magec.latent.editors import LatentEditor
from magec.latent.kinds import LEADING_COMPONENTS, TARGET

#: Sliders per ranked editor (GANSpace, SeFa): the leading ones. InterfaceGAN and StyleFlow offer every attribute
#: of F (``EditorTraits.default_operations``).
LEADING_OPERATIONS = LEADING_COMPONENTS


@dataclass(frozen=True)
class ReachConfig:
    """The measurement's settings (recorded in the pack with its results)."""

    samples: int = 12
    #: Grid of amounts, in multiples of the editor's default amount (each used with both signs).
    multiples: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)
    #: Largest image change (fraction of the distance between two unrelated faces) a slider may reach.
    image_limit: float = 0.6
    #: An attribute edit stops where its attribute reaches this fraction of its largest change on the grid.
    saturation: float = 0.9
    #: Below this standardised change at the reach, an edit barely moves what F sees.
    barely: float = 0.25
    #: ... and (components) below this image change, it barely moves the face.
    barely_image: float = 0.15
    #: A component is named after the attributes it moves by at least this many standard deviations (at most 2).
    name_threshold: float = 0.25

    def __post_init__(self) -> None:
        validation.integer("slider samples", self.samples, 2, 10_000)
        for m in self.multiples:
            validation.positive("slider multiple", m)
        if not self.multiples or list(self.multiples) != sorted(set(self.multiples)):
            raise ValueError("slider multiples must be a non-empty increasing grid")
        validation.positive("image limit", self.image_limit)
        validation.in_range("saturation", self.saturation, 0.0, 1.0)


def slider_operations(editor: LatentEditor) -> list[str]:
    """The operations a slider is offered for: every attribute, the leading components of a ranked editor, the
    default target of a target editor."""
    return editor.traits.default_operations(editor.operations())


def component_name(changes: dict[str, float], threshold: float) -> str:
    """``"age +, smile -"``: the (at most two) attributes a direction moves most, by at least ``threshold``
    standard deviations; ``"no clear attribute"`` when none does."""
    moved = sorted(((abs(v), a, v) for a, v in changes.items() if abs(v) >= threshold), reverse=True)[:2]
    return ", ".join(f"{a} {'+' if v > 0 else '-'}" for _, a, v in moved) or "no clear attribute"


@torch.no_grad()
def attribute_change(
    generator: Generator,
    describer: Describer,
    latents: torch.Tensor,
    editor: LatentEditor,
    operation: str,
    amount: float,
    before: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The edited images of ``latents`` and F's attribute values' change per image (B, n_attributes).

    ``before``: F's attribute values of the unedited images, when the caller has them."""
    if before is None:
        before = _described(generator, describer, latents)[1]
    edited, after = _described(generator, describer, editor.edit(latents, operation, amount))
    return edited, after - before


def _described(generator: Generator, describer: Describer, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of ``latents`` and F's attribute values, synthesised in chunks sized from the memory budget (at
    1024 px a dozen images at once would need several GB), halving a chunk that runs out of memory."""
    size = memory.chunk_size(memory.synthesis_bytes(generator), latents.device).size

    def chunk(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = generator.synthesize(latents[start:stop])
        return images, describer.layout.attribute_values(describer(images)).float()

    parts = memory.map_chunks(chunk, latents.shape[0], size, device=latents.device, what="slider ranges")
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def measure_reach(
    generator: Generator,
    describer: Describer,
    editors: dict[str, LatentEditor],
    spread: torch.Tensor,
    seed: int,
    config: ReachConfig | None = None,
) -> dict:
    """Every slider operation's measured range, effect and name (JSON-ready; ``Pack.info["sliders"]``).

    ``spread``: each attribute's standard deviation over the pack's samples; ``seed``: the pack's sampling seed
    (the measurement uses the first ``config.samples`` of its latents)."""
    config = config or ReachConfig()
    layout = describer.layout
    attributes = layout.attribute_names
    spread = spread.float().clamp_min(1e-8)
    latents = generator.sample_latents(config.samples, seed)
    images, before = _described(generator, describer, latents)
    device = images.device
    spread = spread.to(device)
    rms = lambda a, b: (a - b).flatten(1).pow(2).mean(1).sqrt()
    unrelated = float(rms(images, images.roll(1, 0)).median().clamp_min(1e-8))
    operations: dict[str, dict[str, dict]] = {}
    for name, editor in editors.items():
        if editor.traits.family == TARGET:
            continue  # t in [0, 1]: nothing to measure
        base = float(editor.default_amount)
        out: dict[str, dict] = {}
        for op in slider_operations(editor):
            target = attributes.index(op) if op in attributes else None
            sides, named = {}, None
            for sign in (-1.0, 1.0):
                grid = []
                for m in config.multiples:
                    edited, delta = attribute_change(generator, describer, latents, editor, op, sign * m * base, before)
                    std = (delta.mean(0) / spread).tolist()
                    grid.append((m * base, float(rms(edited, images).mean()) / unrelated, std))
                    if sign > 0 and m == 1.0:
                        named = dict(zip(attributes, std))
                keep = [g for g in grid if g[1] <= config.image_limit] or grid[:1]
                reach = keep[-1]
                if target is not None:
                    largest = max(abs(g[2][target]) for g in grid)
                    saturated = [g for g in grid if abs(g[2][target]) >= config.saturation * largest]
                    if saturated and saturated[0][0] < reach[0]:
                        reach = saturated[0]
                sides[sign] = reach
            lo, hi = sides[-1.0], sides[1.0]
            if target is not None:
                effect = max(abs(lo[2][target]), abs(hi[2][target]))
                barely = effect < config.barely
            else:
                effect = max(abs(v) for side in (lo, hi) for v in side[2])
                barely = effect < config.barely and max(lo[1], hi[1]) < config.barely_image
            entry = {
                "min": round(-lo[0], 4),
                "max": round(hi[0], 4),
                "effect_std": round(effect, 3),
                "image_change": [round(lo[1], 3), round(hi[1], 3)],
                "barely_moves": bool(barely),
            }
            if target is None:
                entry["moves"] = component_name(named if named is not None else {}, config.name_threshold)
            out[op] = entry
        operations[name] = out
    return {"config": {**asdict(config), "multiples": list(config.multiples)}, "operations": operations}
