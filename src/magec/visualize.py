"""PNG figures: labelled sample grids, editor strips and edit grids in the manner of the paper's Fig. 1 and 3.

Figures are drawn on matplotlib ``Figure`` objects with their own Agg canvas (no pyplot, so importing magec
never changes a user's matplotlib backend) and written atomically.
"""

from __future__ import annotations

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


def image_grid(
    rows: Sequence[Sequence[torch.Tensor]],
    target: str | Path,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cell_labels: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
    cell: float = 1.3,
) -> Path:
    """A grid of images (rows x columns) with optional row, column and per-cell captions, saved as PNG."""
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
                ax.set_xlabel(cell_labels[i][j], fontsize=7)
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97) if title else (0, 0, 1, 1))
    return save_figure(fig, target)
