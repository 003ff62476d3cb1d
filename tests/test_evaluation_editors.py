"""Tables 2 and 3 with SeFa and StyleFlow: realism and t columns, StyleFlow ECS per attribute, SeFa ECS."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from eval_fakes import LinearEditor, fake_invert, make_pipeline, one_thread, pixel_features
from magec.evaluation.config import EvaluationConfig, default_editors
from magec.evaluation.edit_plans import EditPlanConfig, ecs_edits
from magec.evaluation.report import ecs_columns, editability_columns, read_csv, write_report
from magec.evaluation.runner import run_evaluation
from magec.evaluation.sources import generated_source
from magec.latent.styleflow import StyleFlowConfig, StyleFlowEditor


@pytest.fixture(scope="module")
def pipeline():
    """The tiny fake pipeline with a real StyleFlow flow fitted on its (latent, F attribute) pairs, and SeFa-like
    components."""
    with one_thread():
        pipe = make_pipeline()
        gen, describer = pipe.generator, pipe.describer
        z = gen.sample_latents(400, seed=3)
        with torch.no_grad():
            values = describer.layout.attribute_values(describer(gen.synthesize(z)))

        def attributes(latents: torch.Tensor) -> torch.Tensor:
            return describer.layout.attribute_values(describer(gen.synthesize(latents)))

        flow = StyleFlowEditor.fit(
            z,
            values,
            ["male", "age"],
            StyleFlowConfig(hidden=16, iterations=40, batch_size=128),
            attribute_fn=attributes,
        )
        eye = torch.eye(4)
        pipe.editors["sefa"] = LinearEditor("sefa", {f"sefa{i}": eye[3 - i] for i in range(4)}, 2.0)
        pipe.editors["styleflow"] = flow
    return pipe


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_default_editors_follow_the_pack(pipeline):
    assert default_editors(make_pipeline()) == ("interfacegan", "ganspace", "interpolate")
    assert default_editors(pipeline) == ("interfacegan", "ganspace", "interpolate", "sefa", "styleflow")


def test_ecs_plans_for_sefa_and_styleflow(pipeline):
    lacks = {"male": True, "age": None}
    ops = ecs_edits(pipeline.editors, "img-0", 0, lacks, EditPlanConfig(ecs_ganspace_components=2))
    sefa = [o for o in ops if o.editor == "sefa"]
    assert [o.operation for o in sefa] == ["sefa0", "sefa1"]  # leading components, as GANSpace
    assert {abs(o.amount) for o in sefa} == {2.0}
    flow = {o.operation: o.amount for o in ops if o.editor == "styleflow"}
    assert set(flow) == {"male", "age"} and flow["male"] > 0  # adds what the image lacks
    again = ecs_edits(pipeline.editors, "img-0", 0, lacks, EditPlanConfig(ecs_ganspace_components=2))
    assert again == ops  # seeded


@pytest.mark.slow  # 5 editors x 3 methods with ECS re-projections and the report: ~6 s idle, 14 s on a busy machine
def test_tables_gain_sefa_and_styleflow_columns(pipeline, tmp_path):
    config = EvaluationConfig(plan=EditPlanConfig(edits_per_editor=2), reference_size=30, batch_size=2)
    source = generated_source(pipeline.generator, 3, seed=0)
    with one_thread():
        paths = run_evaluation(
            pipeline, source, tmp_path / "a", config, invert_fn=fake_invert, features=pixel_features(), progress=False
        )
        again = run_evaluation(
            pipeline, source, tmp_path / "b", config, invert_fn=fake_invert, features=pixel_features(), progress=False
        )
    for name in ("edits.csv", "ecs.csv", "reconstruction.csv"):  # deterministic
        assert (paths.root / name).read_bytes() == (again.root / name).read_bytes()
    edits = _rows(paths.edits_csv)
    assert {r["editor"] for r in edits} == {"interfacegan", "ganspace", "interpolate", "sefa", "styleflow"}
    assert len(edits) == 3 * 3 * 5 * 2
    # t for the attribute editors (InterfaceGAN and StyleFlow), realism for all
    assert all((r["t"] != "") == (r["editor"] in ("interfacegan", "styleflow")) for r in edits)
    assert all(float(r["realism"]) > 0 for r in edits)
    ecs = _rows(paths.ecs_csv)
    assert {r["editor"] for r in ecs} == {"interfacegan", "ganspace", "sefa", "styleflow"}
    assert len(ecs) == 3 * 3 * (2 + 2 + 2 + 2)  # per image and method: 2 attributes x 2 editors, 2 + 2 components
    flow_rows = [r for r in ecs if r["editor"] == "styleflow"]
    assert all(r["lacks_target"] in ("0", "1") for r in flow_rows if r["operation"] == "male")
    assert all(float(r["ecs"]) >= 0 for r in ecs)

    titles2 = [c.label for c in editability_columns(read_csv(paths.edits_csv), default_editors(pipeline))]
    assert {"sefa realism ↑", "styleflow realism ↑", "styleflow t ↑", "interfacegan t ↑"} <= set(titles2)
    assert "sefa t ↑" not in titles2
    titles3 = [c.label for c in ecs_columns(read_csv(paths.ecs_csv))]
    assert any(t.startswith("styleflow: to male") or t.startswith("styleflow: to not-male") for t in titles3)
    assert any(t.startswith("styleflow: age ") for t in titles3)  # continuous: per direction, as InterfaceGAN
    assert any(t.startswith("sefa: sefa0 (random sign)") for t in titles3)

    md = write_report(paths.root, tmp_path / "report.md", command="magec evaluate --generated 3")
    text = md.read_text()
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    for label in ("sefa realism ↑", "styleflow realism ↑", "styleflow t ↑"):
        assert label in text and label in summary["table2"]
    flow_t = [float(r["t"]) for r in edits if r["editor"] == "styleflow" and r["method"] == "magec"]
    assert summary["table2"]["styleflow t ↑"]["means"]["magec"] == pytest.approx(sum(flow_t) / len(flow_t))
    assert any(k.startswith("styleflow: ") for k in summary["table3"]) and "sefa: sefa0 (random sign) ↓" in text
