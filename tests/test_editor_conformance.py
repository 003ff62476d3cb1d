"""Every editor kind honours the LatentEditor contract, and its traits are the one source of the editor lists.

Built on the fast ``tone_pipeline`` (embedded DCGAN, toy F): its InterfaceGAN, GANSpace and interpolation, plus a
SeFa (whole code and a layer range), a small StyleFlow and a direction file's editor.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from magec.latent.editors import DirectionEditor, LatentEditor
from magec.latent.kinds import (
    ATTRIBUTE,
    COMPONENT,
    DIRECTIONS,
    EDITOR_TRAITS,
    LEADING_COMPONENTS,
    TARGET,
    editor_kinds,
    editor_traits,
)

#: The editors built below, by test id (the kind, or kind-variant).
KINDS = ("interfacegan", "ganspace", "sefa", "sefa-layers", "styleflow", "interpolate", "directions")
LINEAR = tuple(name for name in KINDS if editor_traits(name.split("-")[0]).linear)


@pytest.fixture(scope="module")
def editors(tone_pipeline, dcgan, tmp_path_factory):
    from magec.latent.boundaries import load_direction
    from magec.latent.sefa import SeFaEditor
    from magec.latent.styleflow import StyleFlowConfig, StyleFlowEditor, linknet_attributes

    pipe = tone_pipeline
    z = dcgan.sample_latents(300, seed=11)
    with torch.no_grad():
        values = pipe.describer.layout.attribute_values(pipe.describer(dcgan.synthesize(z)))
    sefa = SeFaEditor.fit(dcgan, z)
    path = tmp_path_factory.mktemp("direction") / "tilt.npy"
    np.save(path, pipe.pack.ganspace.directions[1].numpy()[None])
    return {
        "interfacegan": pipe.editors["interfacegan"],
        "ganspace": pipe.editors["ganspace"],
        "sefa": sefa,
        "sefa-layers": SeFaEditor(sefa.directions, sefa.eigenvalues, sefa.sigmas, sefa.default_amount, layers=[0, 2]),
        "styleflow": StyleFlowEditor.fit(
            z,
            values,
            pipe.describer.layout.attribute_names,
            StyleFlowConfig(hidden=16, iterations=20, batch_size=64),
            attribute_fn=linknet_attributes(pipe.pack.linknet),
        ),
        "interpolate": pipe.editors["interpolate"],
        "directions": load_direction(path, dcgan.latent_dim),
    }


def _operation(editor: LatentEditor) -> str:
    return editor.traits.default_operations(editor.operations())[0]


def _codes(dcgan, plus: bool) -> torch.Tensor:
    z = dcgan.sample_latents(3, seed=5)
    return z[:, None].repeat(1, 4, 1) + 0.1 * torch.randn(3, 4, z.shape[1]) if plus else z


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("plus", [False, True], ids=["w", "w+"])
def test_shapes_are_kept_and_gradients_reach_the_latent(editors, dcgan, name, plus):
    editor = editors[name]
    latents = _codes(dcgan, plus).requires_grad_(True)
    edited = editor.edit(latents, _operation(editor), editor.default_amount)
    assert edited.shape == latents.shape and edited.dtype == latents.dtype
    assert not torch.allclose(edited, latents)  # the edit moves the code
    edited.square().sum().backward()
    assert latents.grad is not None and torch.isfinite(latents.grad).all() and latents.grad.abs().sum() > 0


@pytest.mark.parametrize("name", [k for k in KINDS if k != "sefa-layers"])
def test_traits_say_what_the_editor_does(editors, tone_pipeline, name):
    editor = editors[name]
    traits = editor.traits
    assert isinstance(editor, LatentEditor)
    assert traits is type(editor).traits is editor_traits(editor.kind) and traits.kind == editor.kind
    defaults = traits.default_operations(editor.operations())
    assert defaults  # every kind offers something to edit when no operation is named
    attributes = tone_pipeline.describer.layout.attribute_names
    if traits.family == ATTRIBUTE:
        assert editor.operations() == list(attributes) == defaults
    elif traits.family == COMPONENT:
        assert not set(editor.operations()) & set(attributes)
        expected = editor.operations()[:LEADING_COMPONENTS] if traits.ranked else editor.operations()
        assert defaults == expected
    else:
        assert traits.family == TARGET and editor.operations() == []
        assert all(op.startswith("sample:") for op in defaults)
    if traits.default_amount is not None:
        assert editor.default_amount == traits.default_amount


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("plus", [False, True], ids=["w", "w+"])
def test_a_linear_edit_is_undone_by_its_negative(editors, dcgan, name, plus):
    editor = editors[name]
    assert editor.traits.linear
    latents = _codes(dcgan, plus)
    for op in editor.traits.default_operations(editor.operations()):
        back = editor.edit(editor.edit(latents, op, 1.7 * editor.default_amount), op, -1.7 * editor.default_amount)
        torch.testing.assert_close(back, latents, atol=1e-5, rtol=0)


def test_interpolation_is_not_linear(editors, dcgan):
    """Its trait says so: a walk towards a target is not undone by walking the negative amount."""
    latents, editor = _codes(dcgan, False), editors["interpolate"]
    back = editor.edit(editor.edit(latents, "sample:3", 0.5), "sample:3", -0.5)
    assert not torch.allclose(back, latents, atol=1e-3)


def test_every_editor_class_declares_a_registered_kind(editors):
    classes = {type(e) for e in editors.values()}
    assert {c.traits for c in classes} == {*EDITOR_TRAITS, DIRECTIONS}
    assert issubclass(type(editors["directions"]), DirectionEditor) and DirectionEditor.traits is DIRECTIONS
    assert len({t.kind for t in EDITOR_TRAITS}) == len(EDITOR_TRAITS)
    with pytest.raises(KeyError, match="unknown editor kind 'nope'"):
        editor_traits("nope")


def test_the_editor_lists_are_derived_from_the_traits():
    from magec.cli import cmd_edit, cmd_evaluate
    from magec.evaluation import config as evaluation_config
    from magec.evaluation import edit_plans
    from magec.inversion import config
    from magec.latent import reach
    from magec.losses import magec_loss
    from magec.studio import study

    by = {t.kind: t for t in EDITOR_TRAITS}
    assert cmd_edit.EDITORS == cmd_evaluate.EDITORS == tuple(by)
    assert editor_kinds(ATTRIBUTE) == ("interfacegan", "styleflow")  # the improved-target score's editors
    assert editor_kinds(COMPONENT) == editor_kinds(ranked=True) == ("ganspace", "sefa")
    assert config.MAGEC_EDITORS == magec_loss.MAGEC_EDITORS == editor_kinds(magec=True)
    assert set(config.MAGEC_EDITORS) == {k for k, t in by.items() if t.magec}
    assert evaluation_config.PAPER_EDITORS + evaluation_config.OPTIONAL_EDITORS == tuple(
        sorted(by, key=lambda k: not by[k].paper)
    )
    assert evaluation_config.PAPER_EDITORS == ("interfacegan", "ganspace", "interpolate")  # the paper's Tables 2-3
    assert study.STUDY_EDITORS == editor_kinds(ATTRIBUTE) and study.COMPONENT_EDITORS == editor_kinds(COMPONENT)
    assert reach.LEADING_OPERATIONS == edit_plans.EditPlanConfig().ganspace_top == LEADING_COMPONENTS


def test_the_pipeline_owns_its_editors(tone_pipeline, dcgan):
    """The pipeline adds interpolation to a copy; the pack's mapping is left as it was prepared."""
    from magec.pipeline import assemble_pipeline

    pack = tone_pipeline.pack
    before = dict(pack.editors)
    pipe = assemble_pipeline(dcgan, tone_pipeline.describer, pack, perceptual="describer-features", device="cpu")
    assert pack.editors == before and "interpolate" not in pack.editors
    assert pipe.editors is not pack.editors and set(pipe.editors) == {*pack.editors, "interpolate"}
    pipe.editors["extra"] = pack.editors["ganspace"]
    assert "extra" not in pack.editors and "extra" not in tone_pipeline.editors
