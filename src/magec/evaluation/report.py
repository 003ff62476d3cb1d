"""The evaluation report: the paper's three tables from a run's CSVs, in markdown and HTML.

Everything is computed from ``reconstruction.csv``, ``edits.csv``, ``ecs.csv`` (and wall times from
``timing.csv``), which are copied beside the report, so every number in it can be checked against them;
``summary.json`` holds the unrounded means. Bold marks, as in the paper, a method whose mean is the best
of its column and better than every other method by a paired Student's t-test at p < 0.05.
"""

from __future__ import annotations

import csv
import html
import json
import math
import shutil
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magec.errors import file_error
from magec.evaluation.stats import PairedTest, paired_t_test
from magec.io import atomic

ALPHA = 0.05

#: The paper's published numbers (Tables 1-3), for the side-by-side comparison.
PAPER = {
    "reconstruction": {  # MSE, LPIPS, steps, seconds
        "magec": (0.0040, 0.053, 200, 34.6),
        "no-magec": (0.0094, 0.062, 200, 29.7),
        "im2stylegan++": (0.0012, 0.018, 2000, 242.2),
    },
    "realism": {  # InterfaceGAN, GANSpace, interpolation
        "magec": {"interfacegan": 0.998, "ganspace": 0.984, "interpolate": 1.04},
        "no-magec": {"interfacegan": 0.994, "ganspace": 0.985, "interpolate": 1.03},
        "im2stylegan++": {"interfacegan": 0.973, "ganspace": 0.960, "interpolate": 1.00},
    },
    "t": {"magec": 0.122, "no-magec": 0.097, "im2stylegan++": 0.096},  # InterfaceGAN
    "ecs": {  # (InterfaceGAN male, smile), (GANSpace male, smile)
        "magec": {"interfacegan": (0.84, 0.87), "ganspace": (0.95, 0.79)},
        "no-magec": {"interfacegan": (1.01, 0.95), "ganspace": (1.06, 0.90)},
        "im2stylegan++": {"interfacegan": (0.97, 1.00), "ganspace": (1.07, 0.98)},
    },
}


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _float(v: str) -> float:
    return float(v) if v not in ("", None) else float("nan")


def _mean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


@dataclass
class Column:
    """One table column: which rows, which value, pairing key, and whether higher is better."""

    label: str
    rows: list[dict[str, str]]
    value: str
    higher_better: bool
    key: Callable[[dict[str, str]], tuple] = lambda r: (r["image"], r.get("editor", ""), r.get("index", ""))
    paper: dict[str, float] = field(default_factory=dict)


@dataclass
class ColumnResult:
    label: str
    means: dict[str, float]
    counts: dict[str, int]
    tests: dict[tuple[str, str], PairedTest]
    bold: set[str]
    higher_better: bool
    paper: dict[str, float]


def evaluate_column(col: Column, methods: Sequence[str]) -> ColumnResult:
    """Means per method, paired t-tests between every two methods, and the bold (significantly best) cell."""
    by_method: dict[str, dict[tuple, float]] = {m: {} for m in methods}
    for r in col.rows:
        if r["method"] in by_method:
            by_method[r["method"]][col.key(r)] = _float(r[col.value])
    means = {m: _mean(list(v.values())) for m, v in by_method.items()}
    counts = {m: sum(not math.isnan(x) for x in v.values()) for m, v in by_method.items()}
    tests = {}
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            keys = sorted(set(by_method[a]) & set(by_method[b]))
            tests[(a, b)] = paired_t_test([by_method[a][k] for k in keys], [by_method[b][k] for k in keys])
    bold: set[str] = set()
    finite = {m: v for m, v in means.items() if not math.isnan(v)}
    if len(finite) > 1:
        best = (max if col.higher_better else min)(finite, key=finite.get)
        better = lambda t, first: (t.mean_difference > 0) == (col.higher_better == first)
        ok = all(t.significant(ALPHA) and better(t, a == best) for (a, b), t in tests.items() if best in (a, b))
        if ok:
            bold.add(best)
    return ColumnResult(col.label, means, counts, tests, bold, col.higher_better, col.paper)


# ---- the three tables ------------------------------------------------------------------------------


def reconstruction_columns(
    rows: list[dict[str, str]], timing: list[dict[str, str]], perceptual: str = "LPIPS"
) -> list[Column]:
    paper = PAPER["reconstruction"]
    key = lambda r: (r["image"],)
    return [
        Column("MSE ↓", rows, "mse", False, key, {m: v[0] for m, v in paper.items()}),
        Column(f"LPIPS [{perceptual}] ↓", rows, "lpips", False, key, {m: v[1] for m, v in paper.items()}),
        Column("opt. steps ↓", rows, "steps", False, key, {m: v[2] for m, v in paper.items()}),
        Column("time (s) ↓", timing, "projection_seconds", False, key, {m: v[3] for m, v in paper.items()}),
    ]


def editability_columns(rows: list[dict[str, str]], editors: Sequence[str]) -> list[Column]:
    cols = []
    for ed in editors:
        sub = [r for r in rows if r["editor"] == ed]
        if not sub:
            continue
        cols.append(
            Column(
                f"{ed} realism ↑",
                sub,
                "realism",
                True,
                paper={m: v.get(ed, math.nan) for m, v in PAPER["realism"].items()},
            )
        )
        if any(r["t"] for r in sub):
            cols.append(Column(f"{ed} t ↑", sub, "t", True, paper=dict(PAPER["t"]) if ed == "interfacegan" else {}))
    return cols


def ecs_group(row: dict[str, str]) -> str:
    """Table 3's column of an ECS row: the edit and the images it is averaged over."""
    op, amount = row["operation"], _float(row["amount"])
    if row["lacks_target"] == "1":
        return f"{row['editor']}: to {op} (images without {op})"
    if row["lacks_target"] == "0":
        return f"{row['editor']}: to not-{op} (images with {op})"
    if row["editor"] in ("interfacegan", "styleflow"):  # attribute editors: the edit's direction matters
        return f"{row['editor']}: {op} {'+' if amount >= 0 else '-'}"
    return f"{row['editor']}: {op} (random sign)"


def ecs_columns(rows: list[dict[str, str]]) -> list[Column]:
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        groups[ecs_group(r)].append(r)
    order = sorted(groups, key=lambda g: (not g.startswith("interfacegan"), g))  # the paper's column order
    return [Column(f"{g} ↓", groups[g], "ecs", False) for g in order]


def _same_person_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows with ``same_person``: 1 when dlib's distance is under SAME_PERSON, 0 above, empty when not measured."""
    from magec.faces.recognition import SAME_PERSON

    out = []
    for r in rows:
        d = _float(r.get("id_distance", ""))
        out.append(r | {"same_person": "" if math.isnan(d) else str(int(d < SAME_PERSON))})
    return out


def identity_columns(rec: list[dict[str, str]], edits: list[dict[str, str]], ecs: list[dict[str, str]]) -> list[Column]:
    """dlib identity distance and "same person" share: input -> projection, -> random edits (per editor), -> ECS edits.

    Empty when the run did not measure identity (older runs, ``--no-identity``).
    """
    if not any(r.get("id_distance") for r in rec):
        return []
    key = lambda r: (r["image"],)
    cols = [
        Column("projection: ID distance ↓", rec, "id_distance", False, key),
        Column("projection: same person ↑", _same_person_rows(rec), "same_person", True, key),
    ]
    editors = sorted({r["editor"] for r in edits if r.get("id_distance")})
    for ed in editors:
        sub = [r for r in edits if r["editor"] == ed]
        cols.append(Column(f"{ed} edits: ID distance ↓", sub, "id_distance", False))
        cols.append(Column(f"{ed} edits: same person ↑", _same_person_rows(sub), "same_person", True))
    if any(r.get("id_distance") for r in ecs):
        cols.append(Column("ECS edits: ID distance ↓", ecs, "id_distance", False))
        cols.append(Column("ECS edits: same person ↑", _same_person_rows(ecs), "same_person", True))
    return cols


def paste_columns(paste: list[dict[str, str]], methods: Sequence[str]) -> tuple[list[Column], list[str]]:
    """``--paste-back`` columns, with one row label per method and paste mode ("magec (sharp)"), and the labels."""
    modes = list(dict.fromkeys(r["mode"] for r in paste))
    labels = [f"{m} ({mode})" for m in methods for mode in modes]
    rows = [r | {"method": f"{r['method']} ({r['mode']})"} for r in paste]
    edits = [r for r in rows if r["edit"] != "-1"]
    zero = [r for r in rows if r["edit"] == "-1"]
    image, edit = (lambda r: (r["image"],)), (lambda r: (r["image"], r["edit"]))
    columns = [
        Column("amount 0: MSE to the photo in the face ↓", zero, "mse_face", False, image),
        Column("amount 0: MSE outside the mask ↓", zero, "mse_outside", False, image),
        Column("edits: sharpness (share of the photo's) ↑", edits, "sharpness", True, edit),
        Column("edits: ID distance to the photo ↓", edits, "id_distance", False, edit),
        Column("edits: same person ↑", _same_person_rows(edits), "same_person", True, edit),
    ]
    return columns, labels


def _paste_section(doc: _Doc, results: list[ColumnResult], labels: Sequence[str], methods: Sequence[str]) -> None:
    from magec.faces.recognition import SAME_PERSON

    doc.h(2, "Your photo, edited: the paste-back (--paste-back)")
    doc.p(
        "Each face's projection (amount 0) and its random edits pasted back into the photo it was cut from, in "
        "each paste mode: sharp (photo + mask x the upsampled edit, G(edit) - G(projection)) and composite (the "
        "generator's face blended over the photo). Sharpness: the variance of the Laplacian in the face region "
        "(landmark mask > 0.5) over the photo's own there (1: as sharp as the photo). MSE on [0, 1] pixels. ID: "
        f"dlib's own recognition network, photo -> pasted photo, on a crop around the face; same person below "
        f"{SAME_PERSON}. Per-row numbers: paste.csv."
    )
    _mean_table(doc, results, labels, with_paper=False)
    header = ["paired t-test, sharp vs composite"] + [r.label for r in results]
    table = []
    for m in methods:
        pair = (f"{m} (sharp)", f"{m} (composite)")
        if not all(label in labels for label in pair):
            continue
        table.append([(m, False)] + [_test_cell(r.tests[pair]) for r in results])
    if table:
        doc.table(header, table)


def faces_found_sentence(rec: list[dict[str, str]]) -> str:
    """How many inputs had a face dlib found (each input counted once, whatever the methods)."""
    found = {r["image"]: r.get("face_found", "") for r in rec}
    measured = [v for v in found.values() if v != ""]
    misses = sum(v == "0" for v in measured)
    return f"dlib found a face in {len(measured) - misses} of {len(measured)} inputs; " + (
        f"for the other {misses}, the chip is the fixed box where the embedded DCGAN's own faces have theirs "
        "(the distances of those inputs are in the means; face_found = 0 in reconstruction.csv marks them)."
        if misses
        else "every chip comes from dlib's landmarks."
    )


# ---- rendering ------------------------------------------------------------------------------------


def _fmt(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.4g}"


def _pfmt(p: float) -> str:
    return "–" if math.isnan(p) else (f"{p:.2e}" if p < 1e-3 else f"{p:.3f}")


class _Doc:
    """Blocks rendered both as markdown and as HTML."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[tuple[str, bool]]]) -> None:
        self.blocks.append(("table", header, rows))

    def img(self, src: str, alt: str) -> None:
        self.blocks.append(("img", src, alt))

    def raw_md(self, text: str) -> None:
        self.blocks.append(("raw", text))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "table":
                out.append("| " + " | ".join(b[1]) + " |")
                out.append("|" + "---|" * len(b[1]))
                for row in b[2]:
                    out.append("| " + " | ".join(f"**{t}**" if bold else t for t, bold in row) + " |")
            elif b[0] == "img":
                out.append(f"![{b[2]}]({b[1]})")
            else:
                out.append(b[1].rstrip())
            out.append("")
        return "\n".join(out)

    def html(self, title: str) -> str:
        out = [
            "<!doctype html>",
            f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:72em;margin:auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
            "</style></head><body>",
        ]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{html.escape(b[1])}</p>")
            elif b[0] == "table":
                out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in b[1]) + "</tr>")
                for row in b[2]:
                    out.append(
                        "<tr>"
                        + "".join(
                            f"<td>{'<b>' if bold else ''}{html.escape(t)}{'</b>' if bold else ''}</td>"
                            for t, bold in row
                        )
                        + "</tr>"
                    )
                out.append("</table>")
            elif b[0] == "img":
                out.append(f"<p><img src='{html.escape(b[1])}' alt='{html.escape(b[2])}'></p>")
            else:
                out.append(f"<pre>{html.escape(b[1])}</pre>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _mean_table(doc: _Doc, results: list[ColumnResult], methods: Sequence[str], with_paper: bool) -> None:
    header = ["method"] + [f"{r.label} (n)" for r in results]
    rows = []
    for m in methods:
        rows.append([(m, False)] + [(f"{_fmt(r.means[m])} ({r.counts[m]})", m in r.bold) for r in results])
    if with_paper:
        for m in methods:
            if any(m in r.paper for r in results):
                rows.append(
                    [(f"paper: {m}", False)]
                    + [
                        (_fmt(r.paper[m]) if m in r.paper and not math.isnan(r.paper[m]) else "–", False)
                        for r in results
                    ]
                )
    doc.table(header, rows)


def _test_cell(t: PairedTest) -> tuple[str, bool]:
    """A p-value cell: the p-value, the sign of first minus second mean in brackets, bold when significant."""
    d = t.mean_difference
    sign = "" if math.isnan(d) else (">" if d > 0 else "<" if d < 0 else "=")
    return (f"{_pfmt(t.pvalue)} ({sign})" if sign else _pfmt(t.pvalue), t.significant(ALPHA))


def _pvalue_table(doc: _Doc, results: list[ColumnResult], methods: Sequence[str]) -> None:
    header = ["paired t-test"] + [r.label for r in results]
    rows = []
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            rows.append([(f"{a} vs {b}", False)] + [_test_cell(r.tests[(a, b)]) for r in results])
    doc.table(header, rows)


def _identity_section(doc: _Doc, tid: list[ColumnResult], methods: Sequence[str], rec: list[dict[str, str]]) -> None:
    from magec.faces.recognition import SAME_PERSON

    doc.h(2, "Identity: is it still the same person? (dlib)")
    doc.p(
        "Euclidean distance of dlib's 128-d face descriptors (its face-recognition ResNet, as magec's torch port) "
        f"between the input and its projection, and between the input and each edit; dlib calls two faces the "
        f"same person below {SAME_PERSON}, and 'same person' is the share of images under it. The chip is the "
        "input's, cut at the same place from every generated image. " + faces_found_sentence(rec)
    )
    _mean_table(doc, tid, methods, with_paper=False)
    _pvalue_table(doc, tid, methods)


def _summary(results: list[ColumnResult]) -> dict[str, Any]:
    return {
        r.label: {
            "means": r.means,
            "counts": r.counts,
            "bold": sorted(r.bold),
            "pvalues": {f"{a} vs {b}": t.pvalue for (a, b), t in r.tests.items()},
        }
        for r in results
    }


REPORT_TITLE = "# magec evaluation report"


def check_report_path(report_md: str | Path, force: bool = False, run_dir: str | Path | None = None) -> Path:
    """Refuse (before any heavy work) a report path whose .md, .html or asset folder holds someone else's files,
    or whose asset folder would be the run folder ``run_dir`` itself."""
    report_md = Path(report_md)
    if report_md.suffix != ".md":
        raise file_error(
            report_md, "the report must be a .md file (its .html and a folder of the same stem go beside it)"
        )
    for path, marker in ((report_md, REPORT_TITLE), (report_md.with_suffix(".html"), "magec evaluation report")):
        if path.is_dir():
            raise file_error(path, "is a folder; the report needs this name for a file")
        if path.exists() and not force:
            try:
                ours = marker in path.read_text(encoding="utf-8", errors="replace")[:2000]
            except OSError:
                ours = False
            if not ours:
                raise file_error(
                    path, "exists and is not a magec evaluation report; choose another --report or --force"
                )
    assets = report_md.with_suffix("")
    if run_dir is not None and assets.resolve() == Path(run_dir).resolve():
        raise file_error(
            report_md, f"its folder of plots and CSVs would be the run folder {run_dir}; name the report differently"
        )
    if assets.exists() and not assets.is_dir():
        raise file_error(assets, "is a file; the report needs this name for its folder of plots and CSVs")
    if assets.is_dir() and any(assets.iterdir()) and not (assets / "summary.json").is_file() and not force:
        raise file_error(
            assets, "folder exists and holds files magec did not write; choose another --report or --force"
        )
    return report_md


def write_report(
    run_dir: str | Path, report_md: str | Path, command: str | None = None, notes: str | Path | None = None
) -> Path:
    """Build ``report_md`` (+ ``.html`` and a folder of the same stem with plots, CSVs, summary.json)."""
    run_dir, report_md = Path(run_dir), Path(report_md)
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    methods = meta["config"]["methods"]
    editors = meta["config"]["editors"]
    rec = read_csv(run_dir / "reconstruction.csv")
    edits = read_csv(run_dir / "edits.csv")
    ecs = read_csv(run_dir / "ecs.csv")
    timing = read_csv(run_dir / "timing.csv")
    paste = read_csv(run_dir / "paste.csv") if (run_dir / "paste.csv").is_file() else []
    assets = report_md.with_suffix("")
    assets.mkdir(parents=True, exist_ok=True)
    rel = assets.name

    t1 = [evaluate_column(c, methods) for c in reconstruction_columns(rec, timing, meta["perceptual"])]
    t2 = [evaluate_column(c, methods) for c in editability_columns(edits, editors)]
    t3 = [evaluate_column(c, methods) for c in ecs_columns(ecs)]
    tid = [evaluate_column(c, methods) for c in identity_columns(rec, edits, ecs)]
    paste_cols, paste_labels = paste_columns(paste, methods) if paste else ([], [])
    tpaste = [evaluate_column(c, paste_labels) for c in paste_cols]
    n_images = len({r["image"] for r in rec})

    from magec.evaluation.plots import distribution_plots, ecs_examples

    plots = distribution_plots(rec, edits, ecs, methods, assets)
    examples = ecs_examples(run_dir, ecs, methods, assets)
    for name in ("reconstruction.csv", "edits.csv", "ecs.csv", "timing.csv", "run.json") + (
        ("paste.csv",) if paste else ()
    ):
        shutil.copyfile(run_dir / name, assets / name)
    summary = {"table1": _summary(t1), "table2": _summary(t2), "table3": _summary(t3)}
    if tid:
        summary["identity"] = _summary(tid)
    if tpaste:
        summary["paste_back"] = _summary(tpaste)
    atomic.write_json(assets / "summary.json", summary)

    doc = _Doc()
    doc.h(1, "magec evaluation report")
    if command:
        doc.p("Regenerate with:")
        doc.raw_md(f"```\n{command}\n```")
    doc.p(
        f"Inputs: {meta['inputs']} ({n_images} evaluated). Generator: {meta['generator']}; "
        f"describer: {meta['describer']}; "
        f"LPIPS network: {meta['perceptual']}. Realism features: {meta['feature_network']}. "
        f"Realism reference set: {meta['reference']}."
    )
    doc.p(
        f"Raw per-image numbers: {rel}/reconstruction.csv, {rel}/edits.csv, {rel}/ecs.csv (reproducible exactly), "
        f"{rel}/timing.csv (wall times). Cells show mean (n). Bold: best of its column and better than every other "
        f"method by a paired Student's t-test, p < {ALPHA}. The paper's rows are its published StyleGAN2/FFHQ numbers, "
        "for orientation only: the generator, describer and feature networks here differ."
    )
    doc.h(2, "Table 1: reconstruction (per image)")
    doc.p(
        "MSE on [0, 1] pixels; LPIPS column: the perceptual distance named in brackets (the paper's LPIPS-VGG "
        "only when its weights are on disk); time: wall time of the projection per image on this machine."
    )
    _mean_table(doc, t1, methods, with_paper=True)
    _pvalue_table(doc, t1, methods)
    if tid:
        _identity_section(doc, tid, methods, rec)
    if tpaste:
        _paste_section(doc, tpaste, paste_labels, methods)
    doc.h(2, "Table 2: realism and improved-target score of random edits")
    plan = meta["config"]["plan"]
    doc.p(
        f"{plan['edits_per_editor']} random edits per image and editor, the same for every method (paired). "
        "Realism > 1 "
        "means inside the reference manifold. t: the gain of the edited attribute's probability under an InterfaceGAN "
        "edit, floored at 0 (the signed change is in edits.csv, target_change)."
    )
    _mean_table(doc, t2, methods, with_paper=True)
    doc.p("p-values (in brackets: the sign of first minus second method's mean; significant cells bold):")
    _pvalue_table(doc, t2, methods)
    ecs_measured = meta["config"].get("ecs", True)
    if ecs_measured:
        _ecs_table(doc, t3, methods)
    else:
        doc.p("Table 3 (edit-consistency score ECS) is left out: this run did not measure it (--no-ecs).")
    doc.h(2, "Distributions")
    for src, alt in plots:
        doc.img(f"{rel}/{src}", alt)
    if ecs_measured:
        doc.h(2, "Best and worst ECS examples")
        doc.p("Columns: real image, projection G(p(x)), edit x_edit, cycle x_cyc (as the paper's Fig. 4(b)).")
        for src, alt in examples:
            doc.img(f"{rel}/{src}", alt)
    if notes is not None:
        doc.h(2, "Discussion")
        doc.raw_md(Path(notes).read_text(encoding="utf-8"))
    atomic.write_text(report_md, doc.markdown())
    atomic.write_text(report_md.with_suffix(".html"), doc.html("magec evaluation report"))
    return report_md


def _ecs_table(doc: _Doc, t3: list[ColumnResult], methods: Sequence[str]) -> None:
    """Table 3: ECS per editor group, with the protocol it follows and the paper's numbers."""
    doc.h(2, "Table 3: edit-consistency score ECS (lower is better)")
    if any(m.endswith("+pti") for m in methods):
        doc.p(
            "ECS of the +pti methods: the edit x_edit is rendered by the image's tuned generator, re-inverted into "
            "that same tuned generator with the base method's latent optimisation (no second tuning), and the "
            "inverse edit of that latent, rendered by the tuned generator again, is x_cyc. Their realism and t "
            "likewise use the image's tuned generator."
        )
    doc.p(
        "InterfaceGAN: each attribute edited towards what the image lacks, averaged over the images lacking it "
        "(the paper's protocol). GANSpace: leading components, random sign, all images (components carry no "
        "attribute label here). Paper (StyleGAN2, male / smile): "
        + "; ".join(
            f"{m}: InterfaceGAN {v['interfacegan'][0]}/{v['interfacegan'][1]}, "
            f"GANSpace {v['ganspace'][0]}/{v['ganspace'][1]}"
            for m, v in PAPER["ecs"].items()
        )
        + "."
    )
    _mean_table(doc, t3, methods, with_paper=False)
    _pvalue_table(doc, t3, methods)
