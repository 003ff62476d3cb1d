"""The report: its numbers are the CSVs' numbers, bold follows the paired t-test, figures exist."""

from __future__ import annotations

import csv
import json
import math

import pytest

from eval_fakes import fake_invert, make_pipeline, one_thread, pixel_features
from magec.evaluation.config import EvaluationConfig
from magec.evaluation.edit_plans import EditPlanConfig
from magec.evaluation.report import Column, evaluate_column, write_report
from magec.evaluation.runner import run_evaluation
from magec.evaluation.sources import generated_source


def _rows(method_values: dict[str, list[float]]) -> list[dict[str, str]]:
    return [
        {"image": str(i), "method": m, "v": str(v)} for m, vals in method_values.items() for i, v in enumerate(vals)
    ]


def test_bold_only_for_a_significantly_best_method():
    key = lambda r: (r["image"],)
    clear = _rows(
        {"a": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5], "b": [0.5, 0.7, 0.6, 0.8, 0.7, 0.9], "c": [0.6, 0.5, 0.7, 0.6, 0.8, 0.8]}
    )
    res = evaluate_column(Column("x", clear, "v", True, key), ["a", "b", "c"])
    assert res.bold == {"a"}
    assert (
        evaluate_column(Column("x", clear, "v", False, key), ["a", "b", "c"]).bold == set()
    )  # c is lowest but not vs b
    noisy = _rows({"a": [1.0, 0.2, 1.5, 0.1], "b": [0.9, 0.4, 1.2, 0.3]})
    res = evaluate_column(Column("x", noisy, "v", True, key), ["a", "b"])
    assert res.means["a"] == pytest.approx(0.7) and res.bold == set()


@pytest.mark.slow
def test_report_numbers_match_the_csvs(tmp_path):
    pipe = make_pipeline()
    with one_thread():
        paths = run_evaluation(
            pipe,
            generated_source(pipe.generator, 4, 0),
            tmp_path / "run",
            EvaluationConfig(plan=EditPlanConfig(edits_per_editor=2), reference_size=30, batch_size=2, identity=False),
            invert_fn=fake_invert,
            features=pixel_features(),
            progress=False,
        )
        md = write_report(
            paths.root, tmp_path / "docs" / "embedded.md", command="magec evaluate --pack P --generated 4 --out R"
        )
    text = md.read_text()
    assets = tmp_path / "docs" / "embedded"
    summary = json.loads((assets / "summary.json").read_text())
    with open(assets / "edits.csv", newline="") as f:
        edits = list(csv.DictReader(f))
    for method in ("magec", "no-magec", "im2stylegan++"):
        vals = [float(r["realism"]) for r in edits if r["method"] == method and r["editor"] == "ganspace"]
        mean = sum(vals) / len(vals)
        assert summary["table2"]["ganspace realism ↑"]["means"][method] == pytest.approx(mean)
        assert f"{mean:.4g} ({len(vals)})" in text
    with open(assets / "ecs.csv", newline="") as f:
        ecs = [
            r
            for r in csv.DictReader(f)
            if r["editor"] == "ganspace" and r["operation"] == "pc0" and r["method"] == "magec"
        ]
    vals = [float(r["ecs"]) for r in ecs if not math.isnan(float(r["ecs"]))]
    assert f"{sum(vals) / len(vals):.4g} ({len(vals)})" in text
    assert "magec evaluate --pack P --generated 4 --out R" in text
    for name in (
        "reconstruction.png",
        "editability.png",
        "ecs.png",
        "ecs-examples-ganspace-magec.png",
        "ecs-examples-interfacegan-im2stylegan__.png",
    ):
        assert (assets / name).stat().st_size > 1000
        assert f"embedded/{name}" in text
    # the examples show all four images of a row (real, projection, edit, cycle), also for "im2stylegan++"
    import numpy as np
    from PIL import Image

    grid = np.asarray(Image.open(assets / "ecs-examples-interfacegan-im2stylegan__.png").convert("L"), dtype=float)
    assert (grid < 250).mean() > 0.05
    html = md.with_suffix(".html").read_text()
    assert "<table>" in html and "embedded/ecs.png" in html


def test_a_run_without_ecs_reports_no_empty_table_3(tmp_path):
    """--no-ecs: Tables 1 and 2 as usual; Table 3 and its examples are left out with a one-line note, not printed
    as an empty table."""
    pipe = make_pipeline()
    config = EvaluationConfig(
        methods=("magec", "no-magec"),
        plan=EditPlanConfig(edits_per_editor=1),
        ecs=False,
        reference_size=8,
        identity=False,
    )
    with one_thread():
        paths = run_evaluation(
            pipe,
            generated_source(pipe.generator, 2, 0),
            tmp_path / "run",
            config,
            invert_fn=fake_invert,
            features=pixel_features(),
            progress=False,
        )
        text = write_report(paths.root, tmp_path / "report.md").read_text()
    assert (paths.root / "ecs.csv").read_text().count("\n") == 1  # the header only
    assert "Table 1: reconstruction" in text and "Table 2: realism" in text
    assert "Table 3:" not in text and "Best and worst ECS examples" not in text
    assert "Table 3 (edit-consistency score ECS) is left out: this run did not measure it (--no-ecs)." in text
