"""The MAGEC loss, the optimiser and its schedule, on the fast toy pipeline (DCGAN + ToneDescriber)."""

from dataclasses import replace

import pytest
import torch

from magec.describers.base import descriptor_loss
from magec.inversion import invert, method_config
from magec.inversion.config import PAPER_PHASES, InversionConfig
from magec.losses.magec_loss import MagecLoss


@pytest.fixture(scope="module")
def targets(dcgan):
    with torch.no_grad():
        return dcgan.synthesize(dcgan.sample_latents(3, seed=2024))


def test_batched_magec_term_equals_per_edit_loop(tone_pipeline):
    pack = tone_pipeline.pack
    loss = MagecLoss(pack.linknet, pack.interfacegan)
    layout = pack.layout
    z = torch.randn(4, pack.latent_dim)
    d = layout.probabilities(torch.randn(4, layout.dim))
    batched = loss(z, d, loss.targets(d))

    editor, amount = pack.interfacegan, pack.interfacegan.default_amount
    per_edit = []
    for name in layout.attribute_names:
        attr = layout.attribute(name)
        k = layout.attribute_names.index(name)
        for sign in (1.0, -1.0):
            shift = sign if attr.kind == "binary" else sign * amount * float(editor.units_per_step[k])
            d_e = layout.edit_target(d, name, shift)
            per_edit.append(
                descriptor_loss(layout, pack.linknet(editor.edit(z, name, sign * amount)), d_e, reduce_batch=False)
            )
    loop = descriptor_loss(layout, pack.linknet(z), d, reduce_batch=False) + torch.stack(per_edit, 1).mean(1)
    assert torch.allclose(batched, loop, atol=1e-5)
    assert loss.n_edits == 2 * len(layout.attribute_names)


def test_schedule_follows_the_paper():
    config = method_config("magec")
    assert config.phases == PAPER_PHASES and config.total_steps == 200
    assert config.phase_at(0) == config.phase_at(99) == PAPER_PHASES[0]
    assert config.phase_at(100) == config.phase_at(199) == PAPER_PHASES[1]
    first, second = PAPER_PHASES
    assert (first.magec, first.perceptual, first.mse, first.identity) == (3e-4, 0.5, 1e-3, 3e-4)
    assert (second.mse, second.perceptual, second.magec, second.identity) == (0.5, 0.5, 3e-4, 3e-4)
    assert config.lr_at(0) == config.lr_at(24) == 0.07
    assert config.lr_at(25) == pytest.approx(0.07 * 0.8)
    assert config.lr_at(199) == pytest.approx(0.07 * 0.8**7)
    assert config.betas == (0.9, 0.999) and config.eps == 1e-8
    assert all(p.magec == 0 for p in method_config("no-magec").phases)
    baseline = method_config("im2stylegan++")
    assert [p.steps for p in baseline.phases] == [1000, 1000] and [p.target for p in baseline.phases] == [
        "latent",
        "noise",
    ]


def test_optimiser_applies_lambdas_and_lr_at_each_step(tone_pipeline, targets):
    config = method_config("magec", steps_scale=0.1)  # 10 + 10 steps
    config = replace(config, lr_decay_every=5)
    result = invert(tone_pipeline, targets, "magec", config)
    assert result.steps == 20
    for h in result.history:
        phase = config.phase_at(h["step"])
        assert h["lr"] == pytest.approx(config.lr_at(h["step"]))
        assert h["phase"] == (1 if h["step"] < 10 else 2)
        recomputed = [
            phase.mse * m + phase.perceptual * p + phase.magec * g
            for m, p, g in zip(h["mse"], h["perceptual"], h["magec"])
        ]
        assert h["total"] == pytest.approx(recomputed, rel=1e-5)


@pytest.mark.parametrize("method", ["magec", "no-magec", "im2stylegan++"])
def test_each_method_lowers_its_own_objective(tone_pipeline, targets, method):
    config = method_config(method, steps_scale=0.1 if method != "im2stylegan++" else 0.03)
    result = invert(tone_pipeline, targets, method, config)
    first, last = result.history[0], result.history[-1]
    if method == "im2stylegan++":
        assert result.notes  # the DCGAN has no W+ and no noise: said, not hidden
        assert sum(last["total"]) < sum(first["total"])
    else:
        # compare the final objective with the objective at the start, under the final phase's weights
        phase = config.phases[-1]

        def objective(h):
            magec = h.get("magec", [0.0] * len(h["mse"]))
            return sum(
                phase.mse * m + phase.perceptual * p + phase.magec * g
                for m, p, g in zip(h["mse"], h["perceptual"], magec)
            )

        assert objective(last) < objective(first)
    assert result.images.shape == targets.shape
    assert torch.allclose(result.images, tone_pipeline.generator.synthesize(result.latents), atol=1e-6)


@pytest.mark.slow
def test_same_batches_give_identical_results(tone_pipeline, targets):
    """Determinism: the same images in the same batches give bit-identical latents and histories."""
    config = method_config("magec", steps_scale=0.1)
    first = invert(tone_pipeline, targets, "magec", config)
    second = invert(tone_pipeline, targets, "magec", config)
    assert torch.equal(first.latents, second.latents) and first.history == second.history


@pytest.mark.slow
def test_batched_inversion_solves_the_same_problem_as_sequential(tone_pipeline, targets):
    """What holds across batch sizes: each image's objective is its own (losses summed per image, Adam is
    elementwise), so the first step's losses agree to float rounding; later steps may drift apart as the
    optimiser amplifies that rounding (README, "Batches")."""
    config = method_config("magec", steps_scale=0.1)
    together = invert(tone_pipeline, targets, "magec", config)
    apart = [invert(tone_pipeline, targets[i : i + 1], "magec", config) for i in range(len(targets))]
    for key in ("mse", "perceptual", "magec"):
        start = torch.tensor(together.history[0][key])
        alone = torch.tensor([a.history[0][key][0] for a in apart])
        assert torch.allclose(start, alone, rtol=1e-5, atol=1e-7), key


@pytest.mark.slow
def test_magec_loss_pulls_latent_towards_descriptor(tone_pipeline, targets):
    """With only the MAGEC term, optimisation lowers L_MAGEC: the latent becomes consistent with F's descriptor."""
    config = InversionConfig(
        phases=(replace(PAPER_PHASES[0], steps=30, mse=0.0, perceptual=0.0, identity=0.0, magec=1.0),)
    )
    result = invert(tone_pipeline, targets, "magec", config)
    assert sum(result.history[-1]["magec"]) < 0.9 * sum(result.history[0]["magec"])


def test_weights_are_configurable_per_method():
    config = method_config("magec", lambda_magec=0.01, lambda_id=0.0)
    assert all(p.magec == 0.01 and p.identity == 0.0 for p in config.phases)
    assert [p.mse for p in config.phases] == [1e-3, 0.5]  # the rest of the protocol is untouched
    assert all(p.magec == 0 for p in method_config("no-magec", lambda_magec=0.01).phases)


@pytest.mark.parametrize(
    "kwargs", [{"steps_scale": 0}, {"steps_scale": -1}, {"lambda_magec": -1e-3}, {"lambda_id": -1.0}]
)
def test_nonsense_settings_are_refused(kwargs):
    from magec.errors import MagecError

    with pytest.raises(MagecError):
        method_config("magec", **kwargs)
