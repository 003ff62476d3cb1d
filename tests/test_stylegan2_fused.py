"""The fused synthesis layers compute the plain layers' function and gradients, and keep far less for backward."""

from __future__ import annotations

import pytest
import torch

from magec.generators.stylegan2.bench import saved_bytes, step_stats
from magec.generators.stylegan2.config import StyleGAN2Config
from magec.generators.stylegan2.model import StyleGAN2Generator


def _small(clamp: float | None) -> StyleGAN2Generator:
    config = StyleGAN2Config(resolution=32, channels=(16, 16, 16, 16), style_dim=32, n_mlp=2, conv_clamp=clamp)
    return StyleGAN2Generator.random(config, seed=1).double()


def _forward_backward(model: StyleGAN2Generator, fused: bool, w: torch.Tensor, noise: list[torch.Tensor]) -> dict:
    model.fused = fused
    for t in [w, *noise, *model.parameters()]:
        t.grad = None
    image = model.synthesize(w, "w+", noise=noise)
    image.sin().sum().backward()  # a non-linear loss: every pixel gets its own gradient
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return {"image": image.detach(), "w": w.grad.clone(), "noise": [n.grad.clone() for n in noise], "params": grads}


# 0.5 clamps most activations (NVIDIA's conv_clamp): the clamped positions must get no gradient in both.
@pytest.mark.parametrize("clamp", [None, 256.0, 0.5])
def test_fused_layers_match_the_plain_layers_values_and_every_gradient(clamp):
    model = _small(clamp)
    model.requires_grad_(True)  # pivotal tuning's case: weights, biases and noise strengths get gradients too
    w = torch.randn(2, model.n_latent, 32, dtype=torch.double, generator=torch.Generator().manual_seed(0))
    w.requires_grad_(True)
    noise = [n.double().requires_grad_(True) for n in model.make_noise(2, 0)]
    plain = _forward_backward(model, False, w, noise)
    fused = _forward_backward(model, True, w, noise)
    assert torch.allclose(fused["image"], plain["image"], rtol=0, atol=1e-12)

    def close(a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool((a - b).abs().max() <= 1e-10 * b.abs().max())

    assert close(fused["w"], plain["w"])
    assert all(close(a, b) for a, b in zip(fused["noise"], plain["noise"]))
    assert set(fused["params"]) == set(plain["params"])
    assert len(plain["params"]) > 10
    assert all(close(fused["params"][k], plain["params"][k]) for k in plain["params"])


@pytest.mark.slow
def test_fused_layers_keep_under_a_third_of_the_plain_layers_memory_for_backward():
    model = StyleGAN2Generator.random(StyleGAN2Config(resolution=64), seed=0)
    w = torch.randn(2, model.n_latent, model.style_dim, requires_grad=True)
    model.fused = False
    before = saved_bytes(model, w)
    model.fused = True
    after = saved_bytes(model, w)
    # Measured with saved_bytes: 1233 -> 264 MiB at 256 px, batch 2; 2517 -> 545 MiB at 1024 px, batch 1.
    assert after < 0.35 * before, (before, after)


def test_bf16_synthesis_stays_close_to_fp32_and_keeps_half_the_memory():
    model = StyleGAN2Generator.random(StyleGAN2Config(resolution=32, channels=(32,) * 4, style_dim=64), seed=2)
    w = torch.randn(2, model.n_latent, 64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    reference = model.synthesize(w, "w+")
    (g_ref,) = torch.autograd.grad(reference.square().mean(), w)
    with model.precision("bf16"):
        image = model.synthesize(w, "w+")
    assert image.dtype == torch.float32
    (g_bf16,) = torch.autograd.grad(image.square().mean(), w)
    # bf16 keeps 8 bits of mantissa: relative errors of a few percent over 7 layers, not more.
    assert (image - reference).abs().max() < 0.05 * reference.abs().max()
    assert torch.nn.functional.cosine_similarity(g_bf16.flatten(), g_ref.flatten(), dim=0) > 0.99
    assert saved_bytes(model, w, "bf16") < 0.6 * saved_bytes(model, w)


def test_precision_is_refused_where_the_generator_has_none(dcgan):
    from magec.errors import MagecError

    with pytest.raises(MagecError, match="fp32 only"), dcgan.precision("bf16"):
        pass
    with pytest.raises(MagecError, match="not one of"), dcgan.precision("fp16"):
        pass


@pytest.mark.slow
def test_step_stats_reports_time_and_memory_on_cpu():
    stats = step_stats(16, batch=2, device="cpu", repeats=1)
    assert stats["ms"] > 0 and stats["peak_bytes"] is None and stats["saved_bytes"] > 0


def test_bench_reports_every_variant_and_records_a_failing_one(monkeypatch):
    from magec import bench
    from magec.generators.stylegan2 import bench as sg2_bench

    real = sg2_bench.step_stats

    def flaky(resolution, batch, device, repeats=3, **options):
        if options.get("precision") == "bf16":
            raise RuntimeError("no bf16 here\nsecond line")
        return real(resolution, batch, device, repeats=repeats, **options)

    monkeypatch.setattr(sg2_bench, "step_stats", flaky)
    figures = bench.stylegan2_steps((8,), repeats=1)(torch.device("cpu"))
    assert set(figures) == {"8px_batch1_fused", "8px_batch1_plain", "8px_batch1_bf16"}
    assert figures["8px_batch1_bf16"] == {"error": "RuntimeError: no bf16 here"}
    assert figures["8px_batch1_fused"]["saved_bytes"] < figures["8px_batch1_plain"]["saved_bytes"]
