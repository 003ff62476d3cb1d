"""evaluate's ECS re-projections run in chunks of --batch-size, each edit as the single call over all edits would
re-project it (same seed, the same rows of the starting noise maps), up to float rounding."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from fakes import ToneDescriber
from magec.evaluation.chunk import _reproject
from magec.evaluation.config import EvaluationConfig
from magec.evaluation.edit_plans import derived_seed
from magec.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from magec.inversion.config import method_config
from magec.inversion.optimizer import invert
from magec.latent.ganspace import GANSpaceConfig
from magec.latent.linknet import LinkNetConfig
from magec.pipeline import assemble_pipeline
from magec.prepare import PrepareConfig, prepare_pack

TINY = StyleGAN2Config(resolution=32, style_dim=32, n_mlp=4, channels=(16, 16, 8, 8))


@pytest.fixture(scope="module")
def pipeline():
    torch.manual_seed(0)
    generator = StyleGAN2Generator.random(TINY, seed=2)
    describer = ToneDescriber()
    config = PrepareConfig(
        n_samples=400,
        ganspace_samples=400,
        linknet=LinkNetConfig(max_iter=30),
        ganspace=GANSpaceConfig(components=3),
        styleflow=None,
    )
    pack = prepare_pack(generator, describer, config, progress=False)
    return assemble_pipeline(generator, describer, pack, perceptual="describer-features", device="cpu")


def test_chunked_reprojection_matches_one_call_per_edit(pipeline):
    gen = pipeline.generator
    with torch.no_grad():
        edits = gen.synthesize(gen.sample_latents(5, seed=7))
    cfg = EvaluationConfig(methods=("im2stylegan++",), batch_size=2, steps_scale=0.004, identity=False)
    ctx = SimpleNamespace(config=cfg, invert=invert)
    calls = []

    def counting_invert(*args, **kwargs):
        calls.append(len(args[1]))
        return invert(*args, **kwargs)

    ctx.invert = counting_invert
    latents, space, noise, seconds = _reproject(ctx, pipeline, edits, "im2stylegan++", "img")
    assert calls == [2, 2, 1] and space == "w+" and seconds > 0
    assert latents.shape[0] == 5 and all(n.shape[0] == 5 for n in noise)

    seed = derived_seed("reproject", cfg.seed, "img") % (2**31)
    config = method_config("im2stylegan++", cfg.steps_scale)
    whole = invert(pipeline, edits, "im2stylegan++", config, seed=seed)
    assert torch.allclose(latents, whole.latents, atol=1e-4)
    for a, b in zip(noise, whole.noise):
        assert torch.allclose(a, b, atol=1e-4)
    # what chunking without the whole batch's noise rows would give: other starting maps, another result
    naive = invert(pipeline, edits[2:4], "im2stylegan++", config, seed=seed)
    assert max(float((a - b[2:4]).abs().max()) for a, b in zip(naive.noise, whole.noise)) > 1e-2
