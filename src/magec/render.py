"""Editing an inverted latent with the pack's editors, and the grids of the paper's Fig. 1 and 3."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from magec import validation
from magec.errors import MagecError
from magec.generators.base import select_noise
from magec.io.images import save_png
from magec.latent.kinds import ATTRIBUTE, TARGET
from magec.latent.reach import slider_operations
from magec.memory import chunk_size, map_chunks, synthesis_bytes
from magec.pipeline import Pipeline
from magec.visualize import image_grid

log = logging.getLogger("magec")


@dataclass
class Edit:
    editor: str
    operation: str
    amount: float
    image: torch.Tensor


def edit(pipeline: Pipeline, latents: torch.Tensor, editor: str, operation: str, amount: float) -> torch.Tensor:
    """``latents`` moved by one named edit of one of the pipeline's editors (differentiable).

    ``editor``: a key of ``pipeline.editors`` ("interfacegan", "ganspace", "interpolate", ...);
    ``operation``: one of that editor's ``operations()`` (e.g. an attribute, "pc0", "sample:7");
    ``amount``: the step in the editor's units (its ``default_amount`` is a sensible size).
    """
    editors = pipeline.editors
    if editor not in editors:
        raise MagecError(f"unknown editor {editor!r}; available: {', '.join(editors)}")
    validation.in_range("edit amount", amount, -validation.MAX_EDIT_AMOUNT, validation.MAX_EDIT_AMOUNT)
    try:
        return editors[editor].edit(latents, operation, amount)
    except KeyError as exc:
        raise MagecError(str(exc.args[0])) from None


#: Slider values: (editor, operation) -> amount, applied in this order (e.g. ``{("interfacegan", "male"): 2.0}``).
SliderValues = Mapping[tuple[str, str], float]


def edited_latent(pipeline: Pipeline, latent: torch.Tensor, slider_values: SliderValues) -> torch.Tensor:
    """``latent`` moved by every (editor, operation) -> amount in ``slider_values``, one edit after the other.

    Zero amounts are skipped, so a slider at rest costs nothing; each edit is checked as ``edit`` checks it.
    """
    for (editor, operation), amount in slider_values.items():
        if amount != 0:
            latent = edit(pipeline, latent, editor, operation, float(amount))
    return latent


@torch.no_grad()
def render_latent(
    pipeline: Pipeline,
    latent: torch.Tensor,
    space: str,
    noise: list[torch.Tensor] | None,
    slider_values: SliderValues,
) -> torch.Tensor:
    """The image (1, 3, R, R) in [-1, 1] of one code (1, ...) with the slider edits applied.

    What ``magec edit`` and ``magec studio`` render: every edit of the sliders is applied to the code in
    ``space`` (the editors' space), then the generator draws it with the code's own noise maps (if any).
    """
    latent = latent.to(pipeline.device)
    noise = [n.to(pipeline.device) for n in noise] if noise is not None else None
    code = edited_latent(pipeline, latent, slider_values)
    return pipeline.generator.synthesize(code, space=space, noise=noise)


def default_operations(pipeline: Pipeline, editor: str, count: int = 4, seed: int = 0) -> list[str]:
    """What ``magec edit`` edits when no ``--operation`` is given: every attribute for the attribute editors
    (InterfaceGAN, StyleFlow: the studio's sliders), the first ``count`` components, or ``count`` samples."""
    ed = pipeline.editors[editor]
    if ed.traits.family == TARGET:
        return [f"sample:{seed + k}" for k in range(count)]
    if ed.traits.family == ATTRIBUTE:
        return ed.operations()
    return ed.operations()[:count]


@dataclass(frozen=True)
class SliderSpec:
    """One slider: an (editor, operation) pair, its label, its range in the editor's units and a note (empty, or
    e.g. that the edit barely moves anything). Made by ``slider_specs`` from the pack's measured ranges."""

    editor: str
    operation: str
    label: str
    minimum: float
    maximum: float
    step: float
    note: str = ""
    #: True when the range was measured on the pack (``magec.latent.reach``), False for an older pack's fallback.
    measured: bool = True

    @property
    def key(self) -> tuple[str, str]:
        return (self.editor, self.operation)

    @property
    def elem_id(self) -> str:
        """A stable HTML id, e.g. ``slider-interfacegan-male``."""
        return "slider-" + re.sub(r"[^a-z0-9]+", "-", f"{self.editor}-{self.operation}".lower()).strip("-")

    def covers(self, amount: float) -> bool:
        return self.minimum <= amount <= self.maximum


def slider_specs(pipeline: Pipeline) -> list[SliderSpec]:
    """One slider per InterfaceGAN / StyleFlow attribute, per leading GANSpace / SeFa component, and the
    interpolation, with the ranges, names and notes the pack measured when it was prepared
    (``Pack.info["sliders"]``, ``magec.latent.reach``). A pack prepared before that gets +-the editor's default
    amount (what ``magec edit`` uses), and one line saying so."""
    measured = pipeline.pack.info.get("sliders", {}).get("operations", {})
    specs, unmeasured = [], []
    for name, editor in pipeline.editors.items():
        if editor.traits.family == TARGET:  # t in [0, 1] towards each default target
            specs.extend(SliderSpec(name, op, f"{name}: {op}", 0.0, 1.0, 0.05) for op in slider_operations(editor))
            continue
        for op in slider_operations(editor):
            entry = measured.get(name, {}).get(op)
            if entry is None:
                unmeasured.append(f"{name}: {op}")
                reach = round(float(editor.default_amount), 2) or 1.0
                specs.append(
                    SliderSpec(name, op, f"{name}: {op}", -reach, reach, round(reach / 20, 3) or 0.01, "", False)
                )
                continue
            low, high = float(entry["min"]), float(entry["max"])
            label = f"{name}: {op}" + (f" ({entry['moves']})" if entry.get("moves") else "")
            note = (
                f"barely moves anything F sees ({entry['effect_std']:.2f} standard deviations at the end of its range)"
                if entry.get("barely_moves")
                else ""
            )
            step = round(max(high - low, 1e-3) / 40, 3) or 0.01
            specs.append(SliderSpec(name, op, label, round(low, 2), round(high, 2), step, note))
    if unmeasured:
        log.warning(
            "this pack has no measured slider ranges (%s): they span +-each editor's default amount; "
            "re-run magec prepare to measure them",
            ", ".join(unmeasured[:3]) + (", ..." if len(unmeasured) > 3 else ""),
        )
    return specs


def default_amounts(pipeline: Pipeline, editor: str, steps: int = 4) -> list[float]:
    """Symmetric steps up to the editor's default amount (a target editor, e.g. interpolation: t in (0, 1])."""
    ed = pipeline.editors[editor]
    if ed.traits.family == TARGET:
        return [round((k + 1) / steps, 4) for k in range(steps)]
    half = max(1, steps // 2)
    grid = [ed.default_amount * k / half for k in range(-half, half + 1) if k != 0]
    return [round(a, 4) for a in grid]


@torch.no_grad()
def apply_edits(
    pipeline: Pipeline,
    latent: torch.Tensor,
    space: str,
    noise: list[torch.Tensor] | None,
    editor: str,
    operations: list[str],
    amounts: list[float],
) -> list[list[Edit]]:
    """Edited images, one row per operation and one column per amount, for a single code (1, ...)."""
    if editor not in pipeline.editors:
        raise MagecError(f"unknown editor {editor!r}; available: {', '.join(pipeline.editors)}")
    latent = latent.to(pipeline.device)
    noise = [n.to(pipeline.device) for n in noise] if noise is not None else None
    gen = pipeline.generator
    size = chunk_size(synthesis_bytes(gen), pipeline.device, cap=max(1, len(amounts))).size
    rows = []
    for op in operations:
        # The same edits as ``render_latent`` (one code per amount), drawn in batches the memory budget allows.
        codes = torch.cat([edited_latent(pipeline, latent, {(editor, op): a}) for a in amounts])

        def draw(start: int, stop: int, codes: torch.Tensor = codes) -> torch.Tensor:
            return gen.synthesize(codes[start:stop], space=space, noise=select_noise(noise, 0, stop - start))

        images = torch.cat(map_chunks(draw, len(amounts), size, device=pipeline.device, resolution=gen.resolution))
        rows.append([Edit(editor, op, a, img) for a, img in zip(amounts, images)])
    return rows


GRID_FILE = "grid.png"


def edit_file_name(editor: str, operation: str, amount: float) -> str:
    """The PNG one edit is written to, e.g. ``interfacegan_male_+3.00.png``."""
    safe = operation.replace(":", "-").replace("/", "-").replace("\\", "-")
    return f"{editor}_{safe}_{amount:+.2f}.png"


def planned_edit_files(editor: str, operations: list[str], amounts: list[float]) -> list[str]:
    """Every file ``write_edits`` will write, checked to be distinct (two edits never share a file)."""
    names: dict[str, tuple[str, float]] = {}
    for op in operations:
        for amount in amounts:
            name = edit_file_name(editor, op, amount)
            if name in names:
                raise MagecError(
                    f"edits {names[name][0]} {names[name][1]:g} and {op} {amount:g} would both be written to {name}; "
                    "use distinct operations and amounts that differ by at least 0.01"
                )
            names[name] = (op, amount)
    return [*names, GRID_FILE]


def write_edits(
    out_dir: str | Path, rows: list[list[Edit]], source: torch.Tensor | None, projection: torch.Tensor, title: str
) -> list[Path]:
    """One PNG per edit and ``grid.png``: original, projection, then the edits, one row per operation."""
    out_dir = Path(out_dir)
    written = []
    for row in rows:
        for e in row:
            written.append(save_png(e.image, out_dir / edit_file_name(e.editor, e.operation, e.amount)))
    lead = ([source] if source is not None else []) + [projection]
    lead_labels = (["original"] if source is not None else []) + ["projection"]
    grid_rows = [lead + [e.image for e in row] for row in rows]
    col_labels = lead_labels + [f"{e.amount:+.2f}" for e in rows[0]]
    row_labels = [row[0].operation for row in rows]
    written.append(
        image_grid(grid_rows, out_dir / GRID_FILE, row_labels=row_labels, col_labels=col_labels, title=title)
    )
    return written
