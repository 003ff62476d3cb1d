"""The composite ``faces`` describer: layout, gradients, aligned labels, fallback, smile edits, --attributes."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from magec.describers import EMBEDDED_DESCRIBER, load_describer
from magec.describers.faces import FACES_SPEC, FALLBACK_SPEC, face_api_missing
from magec.errors import MagecError

pytestmark = pytest.mark.skipif(face_api_missing() is not None, reason="face-api's files are not fetched")


@pytest.fixture(scope="module")
def faces(dlib_describer):
    assert dlib_describer.spec == FACES_SPEC == EMBEDDED_DESCRIBER
    return dlib_describer


def test_layout_heads_and_differentiable_path(faces, dcgan):
    layout = faces.layout
    assert layout.attribute_names == ["male", "age", "smile", "neutral", "sad", "surprised"]
    assert [h.name for h in layout.heads] == ["gender", "age", "expression"] and layout.dim == 2 + 81 + 7
    z = dcgan.sample_latents(4, seed=5).requires_grad_(True)
    probs = faces(dcgan.synthesize(z))
    for head in layout.heads:
        assert torch.allclose(probs[:, layout.span(head.name)].sum(1), torch.ones(4), atol=1e-5)
    layout.attribute_values(probs)[:, 2].sum().backward()  # smile has a gradient through the fixed box
    assert z.grad is not None and float(z.grad.abs().sum()) > 0


def test_labels_use_aligned_chips_where_dlib_finds_a_face(faces, dcgan):
    with torch.no_grad():
        images = dcgan.synthesize(dcgan.sample_latents(24, seed=11))
        fixed = faces(images)
    labels, stats = faces.describe_labels(images)
    found, _ = faces.aligned_chips(images)
    assert stats.aligned == len(found) and stats.aligned + stats.fixed_box == 24 and 8 <= stats.aligned < 24
    missed = sorted(set(range(24)) - set(found))
    assert torch.allclose(labels[missed], fixed[missed], atol=1e-5)  # no face: the fixed box
    # found faces: other chips, other numbers (the aligned chip is not the fixed box)
    assert float((labels[found] - fixed[found]).abs().max()) > 0.05
    off, off_stats = faces.describe_labels(images, aligned=False)
    assert torch.equal(off, fixed) and off_stats.aligned == 0


@pytest.mark.slow
def test_smile_edit_raises_p_happy(embedded_pack, faces, dcgan):
    """Must-show: InterfaceGAN's smile edit raises P(happy), measured on F's differentiable (fixed-box) path."""
    editor = embedded_pack.editors["interfacegan"]
    assert "smile" in editor.operations()
    z = dcgan.sample_latents(100, seed=2024)
    with torch.no_grad():
        before = faces.layout.attribute_values(faces(dcgan.synthesize(z)))[:, 2]
        after = faces.layout.attribute_values(faces(dcgan.synthesize(editor.edit(z, "smile", editor.default_amount))))
    raised = float((after[:, 2] > before).float().mean())
    assert raised >= 0.8, f"smile edit raised P(happy) for only {raised:.0%} of 100 latents"
    assert float(after[:, 2].mean()) > float(before.mean()) + 0.1


@pytest.mark.slow
def test_missing_face_api_falls_back_and_the_pack_says_so(tmp_path, monkeypatch, caplog, dcgan):
    from magec.pipeline import load_pipeline
    from magec.prepare import PrepareConfig, prepare_pack

    monkeypatch.setenv("MAGEC_WEIGHTS", str(tmp_path / "empty-weights"))
    monkeypatch.setenv("MAGEC_CACHE", str(tmp_path / "empty-cache"))
    with caplog.at_level(logging.WARNING, logger="magec"):
        fallback = load_describer("faces", "cpu")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "face-api" in lines[0] and "missing" in lines[0] and "make face-api" in lines[0]
    assert fallback.spec == FALLBACK_SPEC and fallback.layout.attribute_names == ["male", "age"]
    pack = prepare_pack(dcgan, fallback, PrepareConfig(n_samples=60, ganspace_samples=60, styleflow=None), False)
    manifest = json.loads((pack.save(tmp_path / "pack") / "manifest.json").read_text())
    assert manifest["describer"]["spec"] == FALLBACK_SPEC
    assert manifest["describer_attributes"] == ["male", "age"]
    assert manifest["labels"]["aligned"] + manifest["labels"]["fixed_box"] == 60 and manifest["labels"]["aligned"] > 0
    monkeypatch.undo()  # face-api is back: the pack still reloads its own describer, and refuses the other
    reloaded = load_pipeline(tmp_path / "pack", device="cpu", perceptual="describer-features")
    assert reloaded.describer.spec == "faces-dlib"
    with pytest.raises(MagecError, match="prepared with describer faces-dlib"):
        load_pipeline(tmp_path / "pack", device="cpu", perceptual="describer-features", describer="faces")


@pytest.mark.slow
def test_attributes_restrict_the_magec_loss(embedded_pack, tone_pipeline):
    from magec.evaluation.config import EvaluationConfig
    from magec.inversion.config import method_config
    from magec.inversion.optimizer import invert
    from magec.losses.magec_loss import MagecLoss

    full = MagecLoss(embedded_pack.linknet, embedded_pack.interfacegan)
    only = MagecLoss(embedded_pack.linknet, embedded_pack.interfacegan, attributes=["male", "smile"])
    assert full.n_edits == 12 and only.n_edits == 4 and only.attributes == ["male", "smile"]
    z = torch.randn(2, embedded_pack.latent_dim)
    d = embedded_pack.linknet.predict_proba(z)
    assert not torch.allclose(full(z, d, full.targets(d)), only(z, d, only.targets(d)))
    assert "attributes" not in EvaluationConfig().to_dict()  # older runs stay resumable
    assert EvaluationConfig(attributes=("male", "smile")).to_dict()["attributes"] == ["male", "smile"]
    from dataclasses import replace

    config = replace(method_config("magec", 0.01), attributes=("nope",))
    with pytest.raises(MagecError, match="nope not among the pack's attributes"):
        invert(tone_pipeline, torch.zeros(1, 3, 64, 64), "magec", config)
