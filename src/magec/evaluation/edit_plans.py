"""Seeded random edit plans, shared by every inversion method so that method comparisons are paired.

The paper performs random edits on each projected image (20 per image) and compares methods with a
paired t-test "as the edit operations were the same for all projected images". A plan therefore
depends only on (seed, image id, editor operations), never on the method or on the order images are
processed in, so an interrupted and resumed run draws the same edits.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from magec.latent.editors import LatentEditor
from magec.latent.kinds import COMPONENT, LEADING_COMPONENTS, TARGET


@dataclass(frozen=True)
class EditOp:
    """One edit operation: ``editor.edit(latents, operation, amount)``; ``index`` numbers it within its editor."""

    editor: str
    index: int
    operation: str
    amount: float

    @property
    def direction(self) -> int:
        return 1 if self.amount >= 0 else -1


@dataclass(frozen=True)
class EditPlanConfig:
    """How many random edits each image gets per editor, and how they are drawn.

    ``interpolation_t``: range of the interpolation factor towards a random generator sample.
    ``ganspace_top``: random GANSpace (and SeFa) edits pick among this many leading components (random sign).
    InterfaceGAN (and StyleFlow) edits pick a random attribute and a random direction. Amounts are the editors'
    defaults.
    """

    edits_per_editor: int = 7
    ganspace_top: int = LEADING_COMPONENTS
    interpolation_t: tuple[float, float] = (0.25, 0.75)
    #: ECS edits per image for GANSpace and SeFa (the leading components; attribute editors use every attribute).
    ecs_ganspace_components: int = 2


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across runs, platforms and processing order."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def random_edits(
    editors: Mapping[str, LatentEditor], image_id: str, seed: int, config: EditPlanConfig = EditPlanConfig()
) -> list[EditOp]:
    """The random edits of one image: ``config.edits_per_editor`` operations for each editor."""
    ops: list[EditOp] = []
    for name in sorted(editors):
        editor = editors[name]
        rng = random.Random(derived_seed("random-edits", seed, image_id, name))
        for i in range(config.edits_per_editor):
            if editor.traits.family == TARGET:
                t = rng.uniform(*config.interpolation_t)
                ops.append(EditOp(name, i, f"sample:{rng.randrange(1_000_000_000)}", round(t, 4)))
                continue
            choices = list(editor.operations())
            if editor.traits.ranked:
                choices = choices[: config.ganspace_top]
            if not choices:
                raise ValueError(f"editor {name!r} offers no operations to edit with")
            op = rng.choice(choices)
            sign = rng.choice((1.0, -1.0))
            ops.append(EditOp(name, i, op, sign * float(editor.default_amount)))
    return ops


def ecs_edits(
    editors: Mapping[str, LatentEditor],
    image_id: str,
    seed: int,
    lacks_attribute: Mapping[str, bool | None],
    config: EditPlanConfig = EditPlanConfig(),
) -> list[EditOp]:
    """The edit-consistency edits of one image (editors with an inverse: all but interpolation).

    InterfaceGAN: every attribute, in the direction that *adds* what the image lacks, so each image
    counts towards the ECS of the attribute it does not have (Table 3: "images not containing the
    target attribute"). ``lacks_attribute[a]`` is True when the real image lacks ``a`` (edit +), False
    when it has it (edit -), None when undecidable (continuous attributes: a seeded random direction).
    GANSpace: the leading ``config.ecs_ganspace_components`` components with a seeded random sign.
    StyleFlow as InterfaceGAN (its inverse edit is the reverse attribute change), SeFa as GANSpace.
    """
    ops: list[EditOp] = []
    for name in sorted(editors):
        editor = editors[name]
        if editor.traits.family == TARGET:
            continue  # no inverse edit
        rng = random.Random(derived_seed("ecs-edits", seed, image_id, name))
        amount = float(editor.default_amount)
        if editor.traits.family == COMPONENT:
            chosen: Sequence[str] = list(editor.operations())[: config.ecs_ganspace_components]
            for i, op in enumerate(chosen):
                ops.append(EditOp(name, i, op, rng.choice((1.0, -1.0)) * amount))
            continue
        for i, op in enumerate(editor.operations()):
            lacks = lacks_attribute.get(op)
            sign = rng.choice((1.0, -1.0)) if lacks is None else (1.0 if lacks else -1.0)
            ops.append(EditOp(name, i, op, sign * amount))
    return ops
