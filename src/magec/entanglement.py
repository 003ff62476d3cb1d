"""What else an edit moves: the change of every attribute of F (and of identity) under each editor's directions.

An edit direction is entangled when it drags other attributes along (the glasses direction that also
changes gender). For every editor direction, at the editor's default step, this measures over N seeded
samples the mean change of each of F's attribute values, in the attribute's own units and standardised
by the attribute's spread over the samples (so gender probability and age in years compare), and, when
an identity network is configured, the mean identity distance between each face and its edit. The
target attribute's own change sits on the diagonal.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from magec import validation
from magec.io.atomic import atomic_path, write_text
from magec.latent.kinds import TARGET
from magec.latent.reach import attribute_change
from magec.pipeline import Pipeline
from magec.visualize import new_figure


@dataclass
class EntanglementTable:
    """Rows: (editor, operation); columns: F's attributes (+ "identity" when configured)."""

    rows: list[tuple[str, str]]
    columns: list[str]
    #: Mean change per row and column, in the attribute's units (identity: mean distance).
    change: np.ndarray
    #: ``change`` divided by the attribute's standard deviation over the samples (identity: unchanged).
    standardised: np.ndarray
    samples: int
    seed: int

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            ["editor", "operation", *(f"{c}_change" for c in self.columns), *(f"{c}_std" for c in self.columns)]
        )
        for (editor, op), ch, st in zip(self.rows, self.change, self.standardised):
            writer.writerow([editor, op, *(f"{v:.6g}" for v in ch), *(f"{v:.6g}" for v in st)])
        return out.getvalue()

    def to_markdown(self) -> str:
        head = "| editor | operation | " + " | ".join(f"{c} (std)" for c in self.columns) + " |"
        lines = [head, "|" + " --- |" * (len(self.columns) + 2)]
        for (editor, op), row in zip(self.rows, self.standardised):
            cells = [f"**{v:+.2f}**" if c == op else f"{v:+.2f}" for c, v in zip(self.columns, row)]
            lines.append(f"| {editor} | {op} | " + " | ".join(cells) + " |")
        note = (
            f"\nMean change over {self.samples} samples (seed {self.seed}) at each editor's default step, divided by "
            "the attribute's standard deviation over the samples; bold: the edit's own attribute.\n"
        )
        return "\n".join(lines) + "\n" + note


@torch.no_grad()
def entanglement(pipeline: Pipeline, n: int = 200, seed: int = 0, per_editor: int = 4) -> EntanglementTable:
    """Measure every editor's first ``per_editor`` directions (interpolation has none) on ``n`` seeded samples."""
    validation.integer("samples", n, 2, 100_000)
    validation.integer("directions per editor", per_editor, 1, 1000)
    gen, describer = pipeline.generator, pipeline.describer
    layout = describer.layout
    z = gen.sample_latents(n, seed).to(pipeline.device)
    images = gen.synthesize(z)
    before = layout.attribute_values(describer(images)).float()
    spread = before.std(0).clamp_min(1e-8)
    columns = list(layout.attribute_names) + (["identity"] if pipeline.identity is not None else [])
    rows, change, standardised = [], [], []
    for kind, editor in pipeline.editors.items():
        if editor.traits.family == TARGET:  # no directions of its own
            continue
        for op in editor.operations()[:per_editor]:
            edited, change_per_image = attribute_change(gen, describer, z, editor, op, editor.default_amount, before)
            delta = change_per_image.mean(0)
            row, row_std = delta.tolist(), (delta / spread).tolist()
            if pipeline.identity is not None:
                distance = float(pipeline.identity(edited, images).mean())
                row.append(distance)
                row_std.append(distance)
            rows.append((kind, op))
            change.append(row)
            standardised.append(row_std)
    return EntanglementTable(rows, columns, np.array(change), np.array(standardised), n, seed)


def write_entanglement(table: EntanglementTable, out_dir: str | Path) -> list[Path]:
    """``entanglement.csv``, ``entanglement.md`` and a heat map ``entanglement.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    written = [out_dir / "entanglement.csv", out_dir / "entanglement.md", out_dir / "entanglement.png"]
    write_text(written[0], table.to_csv())
    write_text(written[1], table.to_markdown())
    values = table.standardised
    limit = float(np.abs(values).max()) or 1.0
    fig = new_figure((1.6 + 1.1 * len(table.columns), 0.9 + 0.32 * len(table.rows)))
    ax = fig.subplots()
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(table.columns)), table.columns)
    ax.set_yticks(range(len(table.rows)), [f"{e}: {o}" for e, o in table.rows])
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            own = table.columns[j] == table.rows[i][1]
            ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=7, fontweight="bold" if own else "normal")
    ax.set_title("mean change per edit, in standard deviations of each attribute", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05)
    fig.tight_layout()
    with atomic_path(written[2]) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return written
