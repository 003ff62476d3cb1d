"""End to end on a tiny random-weight StyleGAN2 written as a rosinality checkpoint: prepare (GANSpace as
PCA of W, InterfaceGAN in W), invert with each method (Image2StyleGAN++ optimises W+ then the noise maps),
and edit, all on CPU."""

from __future__ import annotations

import pytest
import torch

from fakes import ToneDescriber
from magec.generators import load_generator
from magec.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from magec.inversion.config import ENCODER_METHODS, METHODS, method_config
from magec.inversion.optimizer import invert
from magec.inversion.pti import PTIConfig
from magec.latent.ganspace import GANSpaceConfig
from magec.latent.linknet import LinkNetConfig
from magec.losses.mse import mse_per_image
from magec.pack import Pack
from magec.pipeline import assemble_pipeline
from magec.prepare import PrepareConfig, prepare_pack

TINY = StyleGAN2Config(resolution=32, style_dim=32, n_mlp=4, channels=(16, 16, 8, 8))
STEPS_SCALE = {"magec": 0.1, "no-magec": 0.1, "im2stylegan++": 0.02}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("sg2pipe")
    source = StyleGAN2Generator.random(TINY, seed=2)
    torch.save(
        {"g_ema": source.state_dict(), "latent_avg": source.sample_latents(500, seed=9).mean(0)}, root / "tiny.pt"
    )
    generator = load_generator(f"stylegan2:{root / 'tiny.pt'}", "cpu")
    describer = ToneDescriber()
    config = PrepareConfig(
        n_samples=400,
        batch_size=200,
        ganspace_samples=400,
        linknet=LinkNetConfig(max_iter=100),
        ganspace=GANSpaceConfig(components=5),
    )
    pack = prepare_pack(generator, describer, config)
    assert pack.info["ganspace"]["source"] == "latent PCA"  # GANSpace on W for a style-based generator
    assert pack.latent_dim == TINY.style_dim  # InterfaceGAN and LinkNet live in W
    pack = Pack.load(pack.save(root / "pack"))
    return assemble_pipeline(generator, describer, pack, perceptual="describer-features", device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in METHODS if m not in ENCODER_METHODS])
def test_invert_each_method_on_stylegan2(pipeline, method):
    gen = pipeline.generator
    with torch.no_grad():
        targets = gen.synthesize(gen.sample_latents(2, seed=123))
    pti = PTIConfig(steps=10) if method.endswith("+pti") else None
    result = invert(pipeline, targets, method, method_config(method, STEPS_SCALE[method.removesuffix("+pti")]), pti=pti)
    if pti is not None:  # one tuned StyleGAN2 per image, and the tuned images are closer to the targets
        assert len(result.tuned) == 2
        pivot = gen.synthesize(result.latents, space=result.space)
        assert float(mse_per_image(result.images, targets).sum()) < float(mse_per_image(pivot, targets).sum())
    mse = [sum(h["mse"]) for h in result.history]
    assert mse[-1] < mse[0]
    if method == "im2stylegan++":
        assert result.space == "w+" and result.latents.shape == (2, TINY.n_latent, TINY.style_dim)
        assert result.noise is not None and len(result.noise) == gen.num_noise
        noise_phase = [sum(h["mse"]) for h in result.history if h["target"] == "noise"]
        assert noise_phase and noise_phase[-1] < noise_phase[0]  # the noise maps were optimised too
    else:
        assert result.space == "w" and result.latents.shape == (2, TINY.style_dim) and result.noise is None
        if method == "magec":
            assert any("magec" in h for h in result.history)


@pytest.mark.slow
def test_edit_inverted_codes_on_stylegan2(pipeline):
    gen, pack, describer = pipeline.generator, pipeline.pack, pipeline.describer
    with torch.no_grad():
        targets = gen.synthesize(gen.sample_latents(3, seed=321))
    result = invert(pipeline, targets, "magec", method_config("magec", 0.1))
    editor = pack.editors["interfacegan"]
    with torch.no_grad():
        before = describer(gen.synthesize(result.latents))[:, 0]
        brighter = describer(gen.synthesize(editor.edit(result.latents, "bright", 2 * editor.default_amount)))[:, 0]
        darker = describer(gen.synthesize(editor.edit(result.latents, "bright", -2 * editor.default_amount)))[:, 0]
        shifted = gen.synthesize(pack.editors["ganspace"].edit(result.latents, "pc0", pack.ganspace.default_amount))
    assert (brighter.mean() > before.mean()) and (darker.mean() < before.mean())
    assert (shifted - gen.synthesize(result.latents)).abs().max() > 1e-3
