"""magec evaluate --paste-back: each face's projection and edits pasted into its photo, and measured there."""

from __future__ import annotations

import csv

import pytest
from PIL import Image
from skimage import data

from magec.errors import MagecError
from magec.evaluation.edit_plans import EditPlanConfig
from magec.evaluation.paste_back import PasteMeter
from magec.evaluation.report import write_report
from magec.evaluation.runner import EvaluationConfig, run_evaluation
from magec.evaluation.sources import faces_source, generated_source
from magec.io.images import tensor_to_pil


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()).save(folder / "a.png")
    return folder


@pytest.mark.slow
def test_the_sharp_paste_of_the_projection_gives_back_the_photo_and_the_composite_does_not(photos):
    source = faces_source(photos, 64, "face-crop", max_faces=1)
    (face,) = source.locate([0])
    square = tensor_to_pil(source.load([0])[0])  # a projection that is the framed crop itself
    darker = tensor_to_pil((source.load([0])[0] - 0.3).clamp(-1, 1))
    rows = PasteMeter().measure(face, square, [darker])
    by = {(r["mode"], r["edit"]): r for r in rows}
    assert set(by) == {("sharp", -1), ("sharp", 0), ("composite", -1), ("composite", 0)}
    sharp, composite = by["sharp", -1], by["composite", -1]
    # sharp at amount 0: the photo's bytes everywhere, so as sharp as the photo and the same person (distance 0)
    assert sharp["mse_face"] == 0 and sharp["mse_outside"] == 0
    assert sharp["sharpness"] == pytest.approx(1.0) and sharp["id_distance"] == pytest.approx(0.0, abs=1e-9)
    # composite: the 64-px square stretched over her face: softer and not the photo's pixels; outside still hers
    assert composite["mse_face"] > 1e-4 and composite["mse_outside"] == 0
    assert composite["sharpness"] < 0.5 * sharp["sharpness"]
    # an edit changes the face region in both modes, and the sharp one keeps more of the photo's detail
    assert by["sharp", 0]["mse_face"] > 1e-3
    assert by["sharp", 0]["sharpness"] > by["composite", 0]["sharpness"]


def test_paste_back_needs_faces_from_photos(tone_pipeline, tmp_path):
    source = generated_source(tone_pipeline.generator, 1, seed=0)
    assert not source.has_photos
    with pytest.raises(MagecError, match="--paste-back needs faces cut from photos"):
        run_evaluation(tone_pipeline, source, tmp_path / "run", EvaluationConfig(paste_back=True), progress=False)


def test_old_runs_stay_resumable_without_paste_back():
    assert "paste_back" not in EvaluationConfig().to_dict()
    assert EvaluationConfig(paste_back=True).to_dict()["paste_back"] is True


@pytest.mark.slow
def test_an_evaluation_with_paste_back_writes_paste_csv_and_its_report_section(photos, tone_pipeline, tmp_path):
    config = EvaluationConfig(
        methods=("magec",),
        editors=("interfacegan",),
        plan=EditPlanConfig(edits_per_editor=2),
        ecs=False,
        reference_size=8,
        steps_scale=0.02,
        identity=False,
    )
    source = faces_source(photos, 64, "face-crop", max_faces=1)
    plain = run_evaluation(tone_pipeline, source, tmp_path / "plain", config, progress=False)
    pasted = run_evaluation(
        tone_pipeline, source, tmp_path / "pasted", EvaluationConfig(**{**vars(config), "paste_back": True}),
        progress=False,
    )  # fmt: skip
    assert not plain.paste_csv.exists()
    # measuring the paste-back changes nothing else the run writes
    for name in ("reconstruction_csv", "edits_csv", "ecs_csv"):
        assert getattr(plain, name).read_bytes() == getattr(pasted, name).read_bytes()
    rows = _rows(pasted.paste_csv)
    edits = _rows(pasted.edits_csv)
    assert len(edits) == 2 and len(rows) == 2 * (1 + len(edits))
    for row in rows:
        assert row["image"] == source.ids[0] and row["method"] == "magec" and row["mode"] in ("sharp", "composite")
        if row["edit"] == "-1":
            assert row["operation"] == ""
        else:
            edit = edits[int(row["edit"])]
            assert (row["editor"], row["operation"], row["amount"]) == (
                edit["editor"],
                edit["operation"],
                edit["amount"],
            )
    zero = {r["mode"]: r for r in rows if r["edit"] == "-1"}
    assert float(zero["sharp"]["mse_face"]) == 0 < float(zero["composite"]["mse_face"])
    text = write_report(pasted.root, tmp_path / "report.md").read_text()
    assert "Your photo, edited: the paste-back" in text and "magec (sharp)" in text and "magec (composite)" in text
    assert (tmp_path / "report" / "paste.csv").is_file()
    assert "paste-back" not in write_report(plain.root, tmp_path / "plain-report.md").read_text()
