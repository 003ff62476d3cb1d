"""magec evaluate with the +pti methods and dlib's identity columns, on the real embedded DCGAN."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from magec.evaluation.config import EvaluationConfig
from magec.evaluation.edit_plans import EditPlanConfig
from magec.evaluation.report import identity_columns, write_report
from magec.evaluation.runner import run_evaluation
from magec.evaluation.sources import generated_source


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_pti_methods_reconstruct_better_and_identity_columns_are_written(tmp_path, tone_pipeline):
    pipe = tone_pipeline
    config = EvaluationConfig(
        methods=("magec", "magec+pti"),
        editors=("interfacegan",),
        plan=EditPlanConfig(edits_per_editor=2),
        reference_size=16,
        batch_size=2,
        steps_scale=0.05,
    )
    source = generated_source(pipe.generator, 2, seed=3)
    paths = run_evaluation(pipe, source, tmp_path / "run", config, progress=False)

    rec = {(r["image"], r["method"]): r for r in _rows(paths.reconstruction_csv)}
    assert len(rec) == 4
    for image in source.ids:
        # the same pivot, then the generator tuned to the photo: a closer reconstruction, and closer identity
        assert float(rec[image, "magec+pti"]["mse"]) < float(rec[image, "magec"]["mse"])
        for method in config.methods:
            r = rec[image, method]
            assert 0.0 <= float(r["id_distance"]) < 2.0
            assert r["face_found"] in ("0", "1")
        assert rec[image, "magec"]["face_found"] == rec[image, "magec+pti"]["face_found"]

    edits = _rows(paths.edits_csv)
    assert edits and all(0.0 < float(r["id_distance"]) < 2.0 for r in edits)
    # paired edits, but a +pti image's edits are drawn by its own tuned generator
    by = {(r["image"], r["editor"], r["index"], r["method"]): r for r in edits}
    pairs = [(by[k[:3] + ("magec",)], r) for k, r in by.items() if k[3] == "magec+pti"]
    assert pairs and any(a["id_distance"] != b["id_distance"] for a, b in pairs)
    ecs = _rows(paths.ecs_csv)
    assert {r["method"] for r in ecs} == {"magec", "magec+pti"}
    assert all(r["id_distance"] and float(r["ecs"]) >= 0.0 for r in ecs)
    records = json.loads(paths.record("magec+pti", source.ids[0]).read_text())
    assert records["timing"]["ecs_reprojection_seconds"] > 0

    report = write_report(paths.root, tmp_path / "report.md")
    text = report.read_text()
    assert "Identity: is it still the same person? (dlib)" in text
    assert "re-inverted into that same tuned generator" in text
    assert "projection: same person" in text


def test_identity_columns_share_and_absence():
    rec = [
        {"image": "a", "method": "m", "id_distance": "0.5", "face_found": "1"},
        {"image": "b", "method": "m", "id_distance": "0.7", "face_found": "0"},
    ]
    edits = [
        {"image": "a", "method": "m", "editor": "interfacegan", "index": "0", "id_distance": "0.59"},
        {"image": "b", "method": "m", "editor": "interfacegan", "index": "0", "id_distance": "0.61"},
    ]
    cols = {c.label: c for c in identity_columns(rec, edits, [])}
    share = cols["projection: same person ↑"]
    assert [r["same_person"] for r in share.rows] == ["1", "0"]
    assert [r["same_person"] for r in cols["interfacegan edits: same person ↑"].rows] == ["1", "0"]
    assert "ECS edits: ID distance ↓" not in cols
    # runs without identity (older runs, --no-identity) get no identity section
    assert identity_columns([{"image": "a", "method": "m", "id_distance": ""}], edits, []) == []


def test_old_runs_without_identity_stay_resumable_with_no_identity():
    assert "identity" not in EvaluationConfig(identity=False).to_dict()
    assert EvaluationConfig().to_dict()["identity"] is True
    EvaluationConfig(methods=("magec+pti", "no-magec+pti"))  # accepted now


@pytest.mark.slow
def test_faces_source_frames_every_face_as_invert_face_crop(tmp_path):
    import numpy as np
    from PIL import Image
    from skimage import data

    from magec.errors import MagecError
    from magec.evaluation.sources import faces_source
    from magec.faces.crop import crop_to_chip_box
    from magec.io.images import pil_to_tensor

    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(photos / "a.png")
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(photos / "b-blank.png")
    source = faces_source(photos, 64, "face-crop")
    n = len(source.ids)  # dlib finds her face, and a second, smaller one (the badge on her suit)
    assert n >= 1 and source.ids == [f"00000-a-face{k}" for k in range(n)]
    assert f"{n} faces from 2 of the 2 photos" in source.description and "1 photos without a face" in source.description
    assert faces_source(photos, 64, "face-crop", max_faces=1).ids == ["00000-a-face0"]
    expected = pil_to_tensor(crop_to_chip_box(astronaut, 64))
    assert torch.equal(source.load([0]), expected)
    with pytest.raises(MagecError, match="finds no face"):
        faces_source(_only(photos / "b-blank.png", tmp_path / "blank"), 64, "face-crop")


@pytest.mark.slow
def test_source_spec_is_checked_once_and_builds_the_same_faces_in_any_process(tmp_path):
    """The typed description ``magec evaluate`` sends to its workers: misuse refused where it is made, and after a
    round trip through pickle (as Ray sends it) it lists the same faces, by the same ids, as ``faces_source``."""
    import pickle
    from types import SimpleNamespace

    from PIL import Image
    from skimage import data

    from magec.errors import MagecError
    from magec.evaluation.sources import SourceSpec, faces_source

    photos = tmp_path / "photos"
    (photos / "run").mkdir(parents=True)
    Image.fromarray(data.astronaut()).save(photos / "a.png")
    Image.fromarray(data.astronaut()).save(photos / "run" / "own-output.png")  # the run's folder: never an input
    with pytest.raises(MagecError, match="need --images"):
        SourceSpec(generated=2, framing="face-crop")
    with pytest.raises(MagecError, match="one place"):
        SourceSpec(folder=photos, generated=2)
    with pytest.raises(MagecError, match="one place"):
        SourceSpec()
    spec = pickle.loads(pickle.dumps(SourceSpec(folder=photos, exclude=[photos / "run"], framing="face-crop")))
    source = spec.build(SimpleNamespace(resolution=64), seed=0)
    expected = faces_source(photos, 64, "face-crop", exclude=[photos / "run"])
    assert source.ids == expected.ids and source.ids[0] == "00000-a-face0"
    assert torch.equal(source.load(range(len(source))), expected.load(range(len(expected))))
    plain = SourceSpec(folder=photos, exclude=(str(photos / "run"),)).build(SimpleNamespace(resolution=64), 0)
    assert plain.ids == ["00000-a"]


def _only(path, folder):
    import shutil

    folder.mkdir()
    shutil.copy(path, folder / path.name)
    return folder
