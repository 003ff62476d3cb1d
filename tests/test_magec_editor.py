"""``--magec-editor styleflow``: the MAGEC loss (Eq. 2) with StyleFlow's edits as the e_i."""

from __future__ import annotations

import pytest
import torch

from magec.errors import MagecError
from magec.inversion.config import MAGEC_EDITORS, InversionConfig, method_config
from magec.latent.styleflow import StyleFlowConfig
from magec.losses import magec_loss
from magec.losses.magec_loss import StyleFlowMagecLoss, build_magec_loss


@pytest.fixture(scope="module")
def flow_pipeline(dcgan):
    """The embedded DCGAN, the toy tone F, and a pack with a small StyleFlow flow (about 10 s)."""
    from fakes import ToneDescriber
    from magec.pipeline import assemble_pipeline
    from magec.prepare import PrepareConfig, prepare_pack

    describer = ToneDescriber()
    config = PrepareConfig(
        n_samples=600, ganspace_samples=300, styleflow=StyleFlowConfig(hidden=32, iterations=60, batch_size=128)
    )
    pack = prepare_pack(dcgan, describer, config, progress=False)
    return assemble_pipeline(dcgan, describer, pack, perceptual="describer-features", device="cpu")


def test_editor_names_agree_and_are_validated():
    assert MAGEC_EDITORS == magec_loss.MAGEC_EDITORS
    assert method_config("magec", magec_editor="styleflow").magec_editor == "styleflow"
    with pytest.raises(MagecError, match="--magec-editor 'sefa'"):
        InversionConfig(magec_editor="sefa")


@pytest.mark.slow  # the module's pack with a StyleFlow flow takes ~8 s; the file ~18 s
def test_styleflow_magec_loss_is_finite_with_a_gradient(flow_pipeline, dcgan):
    pack = flow_pipeline.pack
    loss = build_magec_loss(pack, "styleflow")
    assert isinstance(loss, StyleFlowMagecLoss) and loss.n_edits == 2 * len(pack.layout.attribute_names)
    z = dcgan.sample_latents(3, seed=5).flatten(1).requires_grad_(True)
    with torch.no_grad():
        descriptor = flow_pipeline.describer(dcgan.synthesize(z))
    edited = loss.edited_codes(z)
    assert edited.shape == (3, loss.n_edits, z.shape[1])
    # The edits are StyleFlow's own: the editor's edit of attribute k by +/- amount, row for row.
    for k, name in enumerate(loss.attributes):
        for j, sign in enumerate((1.0, -1.0)):
            expected = loss.editor.edit(z.detach(), name, sign * loss.editor.default_amount)
            assert torch.allclose(edited[:, 2 * k + j].detach(), expected, atol=1e-4)
    value = loss(z, descriptor, loss.targets(descriptor))
    assert value.shape == (3,) and bool(torch.isfinite(value).all())
    (grad,) = torch.autograd.grad(loss(z, descriptor, loss.targets(descriptor)).sum(), z)
    assert bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0
    # ...and the edit term itself carries gradient through the ODE solve (not only the LinkNet(z) term).
    (edit_grad,) = torch.autograd.grad(edited.square().sum(), z)
    assert edit_grad.abs().sum() > 0


@pytest.mark.slow  # the module's pack with a StyleFlow flow takes ~8 s; the file ~18 s
def test_inversion_with_the_styleflow_term_goes_down_and_is_recorded(flow_pipeline, dcgan):
    import magec

    z = dcgan.sample_latents(2, seed=77)
    with torch.no_grad():
        photos = dcgan.synthesize(z)
    config = method_config("magec", steps_scale=0.15, lambda_magec=0.03, magec_editor="styleflow")
    result = magec.invert(flow_pipeline, photos, "magec", config=config, seed=0)
    assert result.magec_editor == "styleflow"
    totals = [sum(h["total"]) for h in result.history]
    magec_terms = [sum(h["magec"]) for h in result.history]
    assert all(torch.isfinite(torch.tensor(magec_terms)))
    assert totals[-1] < 0.8 * totals[0]
    assert magec_terms[-1] < magec_terms[0]
    plain = magec.invert(flow_pipeline, photos, "magec", config=method_config("magec", steps_scale=0.15), seed=0)
    assert plain.magec_editor == "interfacegan"
    assert magec.invert(flow_pipeline, photos, "no-magec", config=method_config("no-magec", 0.05)).magec_editor == ""


@pytest.mark.slow  # the module's pack with a StyleFlow flow takes ~8 s; the file ~18 s
def test_styleflow_editor_needs_a_flow(flow_pipeline):
    from dataclasses import replace

    bare = replace(flow_pipeline.pack, styleflow=None, editors={})
    with pytest.raises(MagecError, match="no StyleFlow editor"):
        build_magec_loss(bare, "styleflow")
