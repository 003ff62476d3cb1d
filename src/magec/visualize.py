"""PNG figures: labelled sample grids, editor strips and edit grids in the manner of the paper's Fig. 1 and 3.

Figures are drawn on matplotlib ``Figure`` objects with their own Agg canvas (no pyplot, so importing magec
never changes a user's matplotlib backend) and written atomically.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from magec.io.atomic import atomic_path


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) floats in [0, 1]."""
    return ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A matplotlib figure on its own Agg canvas: no pyplot state, the user's backend untouched."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, target: str | Path, dpi: int = 100) -> Path:
    target = Path(target)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return target


#: Average glyph width as a fraction of the font size (DejaVu Sans, matplotlib's default, with a margin).
_GLYPH = 0.62


def wrap_label(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters, only between attributes where it can:
    ``"male 0.93 age 31 smile 0.10"`` breaks after a value, never between a name and its value."""
    lines = []
    for line in text.split("\n"):
        parts = [p for p in re.split(r"(?<=\d),? (?=[^\d\s])|, ", line) if p]
        current = ""
        for part in parts:
            if current and len(current) + 1 + len(part) > width:
                lines.append(current)
                current = ""
            current = f"{current} {part}" if current else part
            while len(current) > width:  # one part longer than a line: break it as text
                head, *rest = textwrap.wrap(current, width) or [current]
                if not rest:
                    break
                lines.append(head)
                current = " ".join(rest)
        lines.append(current)
    return "\n".join(lines)


def _chars(inches: float, fontsize: float) -> int:
    """How many characters of ``fontsize`` fit on ``inches``."""
    return max(8, int(inches * 72 / (_GLYPH * fontsize)))


def image_grid(
    rows: Sequence[Sequence[torch.Tensor]],
    target: str | Path,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cell_labels: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
    cell: float = 1.3,
) -> Path:
    """A grid of images (rows x columns) with optional row, column and per-cell captions, saved as PNG.

    Captions and column titles are wrapped to the cell's width (between attributes), so none overlaps its
    neighbour."""
    fig = grid_figure(rows, row_labels, col_labels, cell_labels, title, cell)
    return save_figure(fig, target)


def grid_figure(
    rows: Sequence[Sequence[torch.Tensor]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cell_labels: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
    cell: float = 1.3,
) -> Figure:
    """The figure ``image_grid`` saves (for callers and tests that look at it before it is written)."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = new_figure((cell * n_cols + (1.2 if row_labels else 0), cell * n_rows + 0.4))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i in range(n_rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(rows[i]):
                ax.axis("off")
                continue
            ax.imshow(
                to_numpy_image(rows[i][j]), interpolation="nearest" if rows[i][j].shape[-1] <= 128 else "antialiased"
            )
            if cell_labels is not None:
                ax.set_xlabel(wrap_label(cell_labels[i][j], _chars(cell, 7)), fontsize=7)
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(wrap_label(col_labels[j], _chars(cell, 8)), fontsize=8)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97) if title else (0, 0, 1, 1))
    return fig
