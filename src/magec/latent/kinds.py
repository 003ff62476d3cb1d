"""The editor kinds and their traits: the one place that says what each editor is and where it is used.

Each editor class declares its record here as its ``traits`` class attribute (``InterfaceGANEditor.traits is
INTERFACEGAN``); every list of editor names elsewhere (the CLI's choices, the MAGEC loss's editors, the paper's
editors of the evaluation, the studio's study edits) is derived from these records by ``editor_kinds``. This module
imports nothing heavy, so ``magec --help`` can name the editors without loading torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Family = Literal["attribute", "component", "target"]
#: Operations are F's attributes (InterfaceGAN, StyleFlow): improved-target scores and ECS read them.
ATTRIBUTE: Family = "attribute"
#: Operations are unsupervised directions (GANSpace, SeFa, a direction file): no attribute to score.
COMPONENT: Family = "component"
#: Operations name a target to walk towards, not an attribute or a direction (interpolation: "sample:<seed>");
#: ``operations()`` lists none, amounts are fractions t in [0, 1] and there is no inverse edit.
TARGET: Family = "target"

#: Components of a ranked editor offered by default (sliders, the study's edits, random evaluation edits).
LEADING_COMPONENTS = 5
#: The generator sample a target editor walks towards by default (a slider, the demo's grid).
DEFAULT_TARGET = "sample:777"


@dataclass(frozen=True)
class EditorTraits:
    """What an editor kind is, so callers ask a trait instead of naming kinds."""

    kind: str
    family: Family
    #: Operations are ordered by importance (leading components first); defaults take the leading ones.
    ranked: bool = False
    #: The MAGEC loss (Eq. 2) can take its edits e_i from it (``--magec-editor``).
    magec: bool = False
    #: One of the paper's editors, evaluated by default; the others are added when a pack has them.
    paper: bool = False
    #: A shift along fixed directions: ``edit(edit(w, op, a), op, -a) == w``.
    linear: bool = False
    #: A fixed default amount; None when it is fitted with the editor (``editor.default_amount``).
    default_amount: float | None = None

    def default_operations(self, operations: Sequence[str]) -> list[str]:
        """The operations offered when none are named (sliders, study edits): every attribute, the leading
        ``LEADING_COMPONENTS`` of a ranked editor, or the default target."""
        if self.family == TARGET:
            return [DEFAULT_TARGET]
        return list(operations[:LEADING_COMPONENTS] if self.ranked else operations)


INTERFACEGAN = EditorTraits("interfacegan", ATTRIBUTE, magec=True, paper=True, linear=True)
GANSPACE = EditorTraits("ganspace", COMPONENT, ranked=True, paper=True, linear=True)
SEFA = EditorTraits("sefa", COMPONENT, ranked=True, linear=True)
STYLEFLOW = EditorTraits("styleflow", ATTRIBUTE, magec=True)
INTERPOLATE = EditorTraits("interpolate", TARGET, paper=True, default_amount=0.5)
#: A direction read from a file (``magec edit --editor boundary:FILE.npy``): not one of a pack's editors.
DIRECTIONS = EditorTraits("directions", COMPONENT, linear=True)

#: The editors a pipeline can offer, in the order the CLI lists them.
EDITOR_TRAITS: tuple[EditorTraits, ...] = (INTERFACEGAN, GANSPACE, SEFA, STYLEFLOW, INTERPOLATE)


def editor_traits(kind: str) -> EditorTraits:
    """The traits of a kind (``DIRECTIONS`` included); a ``KeyError`` names the kinds there are."""
    for traits in (*EDITOR_TRAITS, DIRECTIONS):
        if traits.kind == kind:
            return traits
    raise KeyError(f"unknown editor kind {kind!r}; known: {', '.join(t.kind for t in EDITOR_TRAITS)}")


def editor_kinds(
    family: Family | None = None,
    *,
    paper: bool | None = None,
    magec: bool | None = None,
    ranked: bool | None = None,
    linear: bool | None = None,
) -> tuple[str, ...]:
    """The kinds of ``EDITOR_TRAITS`` with the given traits (None: either), in their order."""
    wanted = {"paper": paper, "magec": magec, "ranked": ranked, "linear": linear}
    return tuple(
        t.kind
        for t in EDITOR_TRAITS
        if (family is None or t.family == family)
        and all(value is None or getattr(t, name) == value for name, value in wanted.items())
    )


#: Every editor a pipeline can offer (``magec edit --editor``, ``magec evaluate --editors``).
EDITORS = editor_kinds()
#: Editors the MAGEC loss can take its edits from.
MAGEC_EDITORS = editor_kinds(magec=True)
