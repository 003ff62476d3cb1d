"""What a pack has learned, as pictures: generated faces with F's predictions, and one strip per editor."""

from __future__ import annotations

from pathlib import Path

import torch

from magec import validation
from magec.latent.kinds import TARGET
from magec.pipeline import Pipeline
from magec.render import apply_edits
from magec.visualize import image_grid


def preview_files(pipeline: Pipeline) -> list[str]:
    """The files ``write_preview`` writes."""
    return ["samples.png", *(f"edits-{kind}.png" for kind in pipeline.editors)]


@torch.no_grad()
def write_preview(
    pipeline: Pipeline, out_dir: str | Path, n: int = 24, seed: int = 1234, steps: int = 5, directions: int = 4
) -> list[Path]:
    """Write ``samples.png`` (F's predictions on n generated faces) and ``edits-<editor>.png`` strips."""
    validation.integer("-n", n, 1, 1024)
    validation.integer("steps", steps, 2, 64)
    validation.integer("directions", directions, 1, 64)
    out_dir = Path(out_dir)
    gen, describer = pipeline.generator, pipeline.describer
    latents = gen.sample_latents(n, seed)
    images = gen.synthesize(latents)
    captions = describer.layout.captions(describer(images))
    cols = 8
    rows = [list(images[i : i + cols]) for i in range(0, n, cols)]
    cells = [captions[i : i + cols] for i in range(0, n, cols)]
    written = [
        image_grid(rows, out_dir / "samples.png", cell_labels=cells, title=f"{gen.spec}: F = {pipeline.describer.spec}")
    ]

    base = latents[:3]
    for kind, editor in pipeline.editors.items():
        target = editor.traits.family == TARGET  # walks towards samples, t in [0, 1]
        ops = [f"sample:{seed + 1000 + k}" for k in range(directions)] if target else editor.operations()[:directions]
        span = torch.linspace(0, 1, steps) if target else torch.linspace(-1, 1, steps) * editor.default_amount
        amounts = span.tolist()
        strip_rows, labels, cell_labels = [], [], []
        for op in ops:
            for b in range(len(base)):
                imgs = [
                    e.image
                    for e in apply_edits(pipeline, base[b : b + 1], gen.editing_space.name, None, kind, [op], amounts)[
                        0
                    ]
                ]
                strip_rows.append(imgs)
                labels.append(f"{op}\nface {b}")
                cell_labels.append(describer.layout.captions(describer(torch.stack(imgs))))
        col_labels = [f"{a:+.2f}" for a in amounts]
        written.append(
            image_grid(
                strip_rows,
                out_dir / f"edits-{kind}.png",
                row_labels=labels,
                col_labels=col_labels,
                cell_labels=cell_labels,
                title=f"{kind} edits (amount in latent units)",
            )
        )
    return written
