"""StyleGAN2: format equivalence (rosinality .pt, NVIDIA .pkl, magec safetensors), strict loading,
refusal of malicious or corrupted files, noise handling and gradients."""

from __future__ import annotations

import pickle

import pytest
import torch

from magec.cli.main import main
from magec.errors import MagecError
from magec.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator, load_stylegan2, save_safetensors
from magec.generators.stylegan2.loaders import infer_rosinality_config, load_state_strict
from magec.generators.stylegan2.upfirdn import make_fir_kernel, upfirdn2d
from nvidia_fake import build_fake_pickle, malicious_pickle_bytes, nvidia_forward, nvidia_mapping, nvidia_tensors_from

TINY = StyleGAN2Config(resolution=32, style_dim=32, channels=(16, 16, 8, 8))


@pytest.fixture(scope="module")
def tiny() -> StyleGAN2Generator:
    return StyleGAN2Generator.random(TINY, seed=1, w_avg_samples=2000)


@pytest.fixture(scope="module")
def checkpoints(tiny, tmp_path_factory):
    """The same weights written in each format; NVIDIA's w_avg is stored as rosinality's latent_avg too."""
    root = tmp_path_factory.mktemp("ckpt")
    nv = nvidia_tensors_from(tiny)
    marker = root / "module_src_ran"
    (root / "g.pkl").write_bytes(build_fake_pickle(nv, TINY, marker))
    torch.save({"g_ema": tiny.state_dict(), "latent_avg": nv["mapping.w_avg"].clone()}, root / "g.pt")
    return root, nv, marker


def rosinality_shapes(size: int = 1024, mult: int = 2, style: int = 512, n_mlp: int = 8) -> dict[str, tuple[int, ...]]:
    """rosinality's Generator state_dict keys and shapes, written out from its architecture (not from our model)."""
    ch = {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * mult,
        128: 128 * mult,
        256: 64 * mult,
        512: 32 * mult,
        1024: 16 * mult,
    }
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(1, n_mlp + 1):
        shapes[f"style.{i}.weight"], shapes[f"style.{i}.bias"] = (style, style), (style,)
    shapes["input.input"] = (1, ch[4], 4, 4)

    def styled(p, cin, cout, up):
        shapes[f"{p}.conv.weight"] = (1, cout, cin, 3, 3)
        if up:
            shapes[f"{p}.conv.blur.kernel"] = (4, 4)
        shapes[f"{p}.conv.modulation.weight"], shapes[f"{p}.conv.modulation.bias"] = (cin, style), (cin,)
        shapes[f"{p}.noise.weight"], shapes[f"{p}.activate.bias"] = (1,), (cout,)

    def rgb(p, cin, up):
        if up:
            shapes[f"{p}.upsample.kernel"] = (4, 4)
        shapes[f"{p}.conv.weight"] = (1, 3, cin, 1, 1)
        shapes[f"{p}.conv.modulation.weight"], shapes[f"{p}.conv.modulation.bias"] = (cin, style), (cin,)
        shapes[f"{p}.bias"] = (1, 3, 1, 1)

    styled("conv1", ch[4], ch[4], False)
    rgb("to_rgb1", ch[4], False)
    log = size.bit_length() - 1
    for i in range(3, log + 1):
        styled(f"convs.{2 * (i - 3)}", ch[2 ** (i - 1)], ch[2**i], True)
        styled(f"convs.{2 * (i - 3) + 1}", ch[2**i], ch[2**i], False)
        rgb(f"to_rgbs.{i - 3}", ch[2**i], True)
    for j in range((log - 2) * 2 + 1):
        r = 2 ** ((j + 5) // 2)
        shapes[f"noises.noise_{j}"] = (1, 1, r, r)
    return shapes


def test_config_f_1024_rosinality_state_dict_loads_strictly():
    shapes = rosinality_shapes()
    state = {k: torch.randn(s) for k, s in shapes.items()}
    config = infer_rosinality_config(state, "config-f.pt")
    assert (config.resolution, config.style_dim, config.n_mlp, config.n_latent) == (1024, 512, 8, 18)
    assert config.channel_table() == StyleGAN2Config().channel_table()
    model = StyleGAN2Generator(StyleGAN2Config())  # config-f defaults
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    load_state_strict(model, state, "config-f.pt")  # raises on any missing/unexpected key or shape
    assert torch.equal(model.state_dict()["convs.15.conv.weight"], state["convs.15.conv.weight"])


def test_all_formats_compute_the_same_function(tiny, checkpoints, tmp_path):
    root, nv, marker = checkpoints
    from_pt = load_stylegan2(root / "g.pt")
    from_pkl = load_stylegan2(root / "g.pkl")
    assert not marker.exists(), "the pickle's embedded module source was executed"
    save_safetensors(from_pkl, tmp_path / "g.safetensors")
    from_st = load_stylegan2(tmp_path / "g.safetensors")

    ws = torch.randn(2, TINY.n_latent, TINY.style_dim, generator=torch.Generator().manual_seed(5))
    reference = nvidia_forward(nv, ws)  # NVIDIA's math, written independently of magec
    noise = tiny.make_noise(2, seed=9)
    for model in (from_pt, from_pkl, from_st):
        assert (model.synthesize(ws, "w+") - reference).abs().max() < 1e-5
        assert (model.synthesize(ws, "w+", noise) - tiny.synthesize(ws, "w+", noise)).abs().max() < 1e-5
        z = torch.randn(3, TINY.style_dim, generator=torch.Generator().manual_seed(6))
        assert (model.map(z) - nvidia_mapping(nv, z)).abs().max() < 1e-5
        assert model.w_avg_source == "checkpoint"
        assert torch.allclose(model.initial_latent(), nv["mapping.w_avg"])


def test_nvidia_conv_clamp_is_honoured(tiny, tmp_path):
    nv = nvidia_tensors_from(tiny)
    path = tmp_path / "clamped.pkl"
    path.write_bytes(build_fake_pickle(nv, TINY, tmp_path / "marker", conv_clamp=0.5, protocol=4))
    model = load_stylegan2(path)
    assert model.config.conv_clamp == 0.5
    ws = tiny.sample_latents(2, seed=3).unsqueeze(1).repeat(1, TINY.n_latent, 1)
    clamped = model.synthesize(ws, "w+")
    assert (clamped - nvidia_forward(nv, ws, conv_clamp=0.5)).abs().max() < 1e-5
    assert (clamped - tiny.synthesize(ws, "w+")).abs().max() > 1e-2  # the clamp is active at 0.5


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(malicious_pickle_bytes(marker))
    with pytest.raises(MagecError, match=r"evil\.pkl: refusing to load (posix|os|nt)\.system"):
        load_stylegan2(evil)
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(evil), str(out)]) == 1
    assert not marker.exists()
    assert not out.exists()


def test_pickle_with_unknown_class_is_refused(tmp_path):
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"G_ema": torch.nn.Linear(2, 2)}))  # torch.nn classes are not allowed either
    with pytest.raises(MagecError, match=r"other\.pkl: refusing to load torch\.nn"):
        load_stylegan2(path)


def test_missing_and_unexpected_keys_are_named(tiny, tmp_path):
    state = dict(tiny.state_dict())
    del state["convs.2.noise.weight"]
    state["convs.2.extra.weight"] = torch.zeros(1)
    torch.save({"g_ema": state}, tmp_path / "bad.pt")
    with pytest.raises(MagecError) as err:
        load_stylegan2(tmp_path / "bad.pt")
    message = str(err.value)
    assert (
        "bad.pt" in message
        and "missing key(s) e.g. convs.2.noise.weight" in message
        and "unexpected key(s) e.g. convs.2.extra.weight" in message
    )
    assert "\n" not in message


def test_explicit_architecture_that_does_not_match_is_refused(checkpoints):
    root, _, _ = checkpoints
    with pytest.raises(
        MagecError,
        match=r"g\.pt: does not match the StyleGAN2 64x64 architecture: 18 missing key\(s\) "
        r"e\.g\. convs\.6\.conv\.weight",
    ):
        load_stylegan2(root / "g.pt", size=64)


@pytest.mark.parametrize(
    "kind", ["garbage", "truncated_pt", "truncated_pkl", "foreign_safetensors", "truncated_safetensors", "wrong_dict"]
)
def test_corrupted_or_wrong_files_give_one_line_errors(kind, checkpoints, tiny, tmp_path):
    root, _, _ = checkpoints
    path = tmp_path / f"{kind}.bin"
    if kind == "garbage":
        path.write_bytes(b"hello, not a network")
    elif kind == "truncated_pt":
        path.write_bytes((root / "g.pt").read_bytes()[:5000])
    elif kind == "truncated_pkl":
        path.write_bytes((root / "g.pkl").read_bytes()[:5000])
    elif kind == "foreign_safetensors":
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(2)}, str(path))
    elif kind == "truncated_safetensors":
        save_safetensors(tiny, tmp_path / "ok.safetensors")
        path.write_bytes((tmp_path / "ok.safetensors").read_bytes()[:3000])
    else:
        torch.save({"generator": {"a": torch.zeros(1)}}, path)
    with pytest.raises(MagecError) as err:
        load_stylegan2(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_cli_convert_round_trip(checkpoints, tiny, tmp_path, capsys):
    root, _, _ = checkpoints
    out = tmp_path / "conv" / "g.safetensors"
    assert main(["convert", str(root / "g.pt"), str(out)]) == 0
    assert "32x32" in capsys.readouterr().out
    ws = tiny.sample_latents(2, seed=4)
    assert torch.equal(load_stylegan2(out).synthesize(ws), tiny.synthesize(ws))
    assert sorted(p.name for p in out.parent.iterdir()) == ["g.safetensors"]  # no temporary left behind


def test_fixed_noise_is_deterministic_and_noise_matters(tiny):
    w = tiny.sample_latents(2, seed=0)
    assert torch.equal(tiny.synthesize(w), tiny.synthesize(w))
    assert all(torch.equal(a, b) for a, b in zip(tiny.make_noise(2, seed=3), tiny.make_noise(2, seed=3)))
    assert not torch.equal(tiny.make_noise(2, seed=3)[0], tiny.make_noise(2, seed=4)[0])
    assert [n.shape[-1] for n in tiny.make_noise(1, seed=0)] == [4, 8, 8, 16, 16, 32, 32]
    assert (tiny.synthesize(w, noise=tiny.make_noise(2, seed=3)) - tiny.synthesize(w)).abs().max() > 1e-3


def test_w_and_w_plus_agree_and_sampling_is_seeded(tiny):
    w = tiny.sample_latents(3, seed=2)
    assert torch.equal(w, tiny.sample_latents(3, seed=2)) and not torch.equal(w, tiny.sample_latents(3, seed=1))
    assert torch.allclose(tiny.synthesize(w, "w"), tiny.synthesize(tiny.convert_latents(w, "w", "w+"), "w+"), atol=1e-6)
    assert list(tiny.spaces) == ["w", "w+"] and tiny.editing_space.shape == (32,)
    assert tiny.has_noise and tiny.pca_features(w) is None


def test_gradients_reach_w_w_plus_and_noise(tiny):
    w = tiny.initial_latent()[None].clone().requires_grad_(True)
    tiny.synthesize(w).square().mean().backward()
    assert w.grad.norm() > 0

    w_plus = tiny.convert_latents(tiny.initial_latent()[None], "w", "w+").clone().requires_grad_(True)
    noise = [n.requires_grad_(True) for n in tiny.make_noise(1, seed=0)]
    tiny.synthesize(w_plus, "w+", noise).square().mean().backward()
    assert (w_plus.grad.flatten(2).norm(dim=2) > 0).all()  # every layer's code matters
    assert all(n.grad is not None and n.grad.norm() > 0 for n in noise)
    assert all(p.grad is None for p in tiny.parameters())  # the network stays frozen


def test_initial_latent_without_stored_average_is_the_sampled_mean(tiny):
    model = StyleGAN2Generator.random(TINY, seed=1, w_avg_samples=2000)
    assert model.w_avg_source == ""
    w_avg = model.initial_latent()
    assert model.w_avg_source == "sampled"
    others = model.sample_latents(2000, seed=77)
    spread = others.std(0).mean()
    assert (w_avg - others.mean(0)).norm() / spread < 0.2 * TINY.style_dim**0.5
    assert torch.equal(model.initial_latent(), w_avg)  # cached


def test_truncation_pulls_towards_w_avg(tiny):
    z = torch.randn(4, TINY.style_dim, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(tiny.map(z, truncation_psi=0.0), tiny.initial_latent().expand(4, -1), atol=1e-5)
    half = tiny.map(z, truncation_psi=0.5)
    assert torch.allclose(half - tiny.initial_latent(), 0.5 * (tiny.map(z) - tiny.initial_latent()), atol=1e-4)


def test_upfirdn_upsampling_preserves_a_constant_image():
    x = torch.full((1, 2, 6, 6), 3.0)
    kernel = make_fir_kernel((1, 3, 3, 1), gain=4.0)
    y = upfirdn2d(x, kernel, up=2, pad=(2, 1))
    assert y.shape == (1, 2, 12, 12)
    assert torch.allclose(y[..., 2:-2, 2:-2], torch.full_like(y[..., 2:-2, 2:-2], 3.0))


def test_bench_step_runs_at_small_resolution():
    from magec.generators.stylegan2.bench import stylegan2_step_ms

    assert stylegan2_step_ms(8, "cpu", repeats=1) > 0


def test_tensorflow_pickle_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "tf.pkl"
    path.write_bytes(b"\x80\x02}q\x00X\x05\x00\x00\x00G_emaq\x01cdnnlib.tflib.network\nNetwork\nq\x02)\x81q\x03s.")
    with pytest.raises(MagecError, match=r"tf\.pkl: refusing to load dnnlib\.tflib\.network\.Network.*TensorFlow"):
        load_stylegan2(path)
