"""Figures of the evaluation report (matplotlib, headless): metric distributions and best/worst ECS grids."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from magec.visualize import new_figure

_PNG_META = {"Software": None}


def _values(rows: list[dict[str, str]], key: str, method: str) -> list[float]:
    out = []
    for r in rows:
        if r["method"] == method and r.get(key, "") != "":
            v = float(r[key])
            if not math.isnan(v) and not math.isinf(v):
                out.append(v)
    return out


def _violin(
    ax, rows: list[dict[str, str]], key: str, methods: Sequence[str], title: str, threshold: float | None = None
) -> None:
    data = [_values(rows, key, m) for m in methods]
    pos = [i for i, d in enumerate(data) if d]
    if pos:
        ax.violinplot([data[i] for i in pos], positions=pos, showmeans=True, showextrema=True)
    ax.set_xticks(range(len(methods)), methods, rotation=15, fontsize=8)
    ax.set_title(title, fontsize=9)
    if threshold is not None:
        ax.axhline(threshold, color="grey", lw=0.8, ls="--")


def distribution_plots(rec, edits, ecs, methods: Sequence[str], out_dir: Path) -> list[tuple[str, str]]:
    """One PNG per table: violins of each metric per method. Returns (file name, caption) pairs."""
    figures = []
    fig = new_figure((8, 3.2))
    axes = fig.subplots(1, 2)
    _violin(axes[0], rec, "mse", methods, "MSE")
    _violin(axes[1], rec, "lpips", methods, "LPIPS")
    figures.append(("reconstruction.png", "Reconstruction distributions", fig))

    editors = sorted({r["editor"] for r in edits})
    panels = [(ed, "realism") for ed in editors] + [
        (ed, "t") for ed in editors if any(r["t"] for r in edits if r["editor"] == ed)
    ]
    if panels:
        fig = new_figure((3.2 * len(panels), 3.2))
        axes = fig.subplots(1, len(panels), squeeze=False)
        for ax, (ed, key) in zip(axes[0], panels):
            _violin(
                ax,
                [r for r in edits if r["editor"] == ed],
                key,
                methods,
                f"{ed} {key}",
                1.0 if key == "realism" else None,
            )
        figures.append(("editability.png", "Realism and improved-target distributions of random edits", fig))

    ecs_editors = sorted({r["editor"] for r in ecs})
    if ecs_editors:
        fig = new_figure((3.6 * len(ecs_editors), 3.2))
        axes = fig.subplots(1, len(ecs_editors), squeeze=False)
        for ax, ed in zip(axes[0], ecs_editors):
            _violin(ax, [r for r in ecs if r["editor"] == ed], "ecs", methods, f"{ed} ecs", 1.0)
        figures.append(("ecs.png", "Edit-consistency (ecs) distributions", fig))

    out = []
    for name, caption, f in figures:
        f.tight_layout()
        f.savefig(out_dir / name, dpi=100, metadata=_PNG_META)
        out.append((name, caption))
    return out


def _safe(name: str) -> str:
    """The folder name the runner stores a method's or editor's images under."""
    from magec.evaluation.run_folder import safe_name

    return safe_name(name)


def _load(path: Path) -> Image.Image | None:
    return Image.open(path).convert("RGB") if path.is_file() else None


def ecs_examples(
    run_dir: Path, ecs: list[dict[str, str]], methods: Sequence[str], out_dir: Path, n: int = 3
) -> list[tuple[str, str]]:
    """Per ECS editor and method: the ``n`` best and ``n`` worst ecs, each row real | projection | edit | cycle."""
    out = []
    for ed in sorted({r["editor"] for r in ecs}):
        for m in methods:
            rows = [r for r in ecs if r["editor"] == ed and r["method"] == m and r["ecs"] not in ("", "nan")]
            rows = [r for r in rows if not math.isnan(float(r["ecs"]))]
            if not rows:
                continue
            rows.sort(key=lambda r: float(r["ecs"]))
            panels = [("best", rows[:n]), ("worst", rows[::-1][:n])]
            k = max(len(p[1]) for p in panels)
            fig = new_figure((8 * 1.25, k * 1.3 + 0.4))
            axes = fig.subplots(k, 8, squeeze=False)
            for col0, (label, chosen) in zip((0, 4), panels):
                for i in range(k):
                    for j in range(4):
                        axes[i][col0 + j].axis("off")
                    if i >= len(chosen):
                        continue
                    r = chosen[i]
                    base = run_dir / "images" / r["image"]
                    md = base / _safe(m)
                    tiles = [
                        _load(base / "real.png"),
                        _load(md / "projection.png"),
                        _load(md / f"ecs-{_safe(ed)}-{r['index']}-edit.png"),
                        _load(md / f"ecs-{_safe(ed)}-{r['index']}-cyc.png"),
                    ]
                    for j, (tile, name) in enumerate(zip(tiles, ("real", "projection", "edit", "cycle"))):
                        if tile is not None:
                            axes[i][col0 + j].imshow(tile)
                        if i == 0:
                            axes[i][col0 + j].set_title(f"{label}: {name}" if j == 0 else name, fontsize=7)
                    axes[i][col0].text(
                        0.03,
                        0.03,
                        f"ecs {float(r['ecs']):.2f}\n{r['operation']} {float(r['amount']):+.3g}",
                        fontsize=6,
                        ha="left",
                        va="bottom",
                        transform=axes[i][col0].transAxes,
                        bbox={"facecolor": "white", "alpha": 0.8, "pad": 1, "lw": 0},
                    )
            fig.suptitle(f"{m}, {ed}: best (left) and worst (right) ecs", fontsize=9)
            fig.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.02, wspace=0.08, hspace=0.12)
            name = f"ecs-examples-{_safe(ed)}-{_safe(m)}.png"
            fig.savefig(out_dir / name, dpi=100, metadata=_PNG_META)
            out.append((name, f"Best and worst ecs, {m}, {ed}"))
    return out
