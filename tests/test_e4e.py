"""e4e / pSp checkpoints: the published layout, written out here from e4e's architecture with random weights and
saved in e4e's training-checkpoint format, loads strictly through ``load_e4e_encoder`` and gives the codes of a
reference forward written here (not magec's modules), to 1e-5; every bad file is one line naming it.

The reference follows e4e's ``models/encoders/psp_encoders.py`` (Encoder4Editing, GradualStyleEncoder) and
``helpers.py`` (IR-SE50 units, ``_upsample_add``) and ``models/psp.py`` (``latent_avg`` added to the codes).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from magec.cli.main import main
from magec.encoders.e4e import describe_encoder_checkpoint, load_e4e_encoder
from magec.errors import MagecError
from magec.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator

# ---- e4e's published architecture, written out ---------------------------------------------------------------

#: IR-SE50 as e4e's get_blocks(50): (in_channel, depth, units); the first unit of each stage has stride 2.
STAGES = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))


def units() -> list[tuple[int, int, int]]:
    """(in_channel, depth, stride) of the 24 body units, in order."""
    out = []
    for c_in, depth, n in STAGES:
        out.append((c_in, depth, 2))
        out += [(depth, depth, 1)] * (n - 1)
    return out


def style_spatial(i: int) -> int:
    """coarse_ind 3, middle_ind 7: GradualStyleBlock(512, 512, 16 / 32 / 64)."""
    return 16 if i < 3 else 32 if i < 7 else 64


def e4e_reference_state(n_styles: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Encoder4Editing's state_dict keys and shapes, random values at scales that keep activations O(1)."""
    g = torch.Generator().manual_seed(seed)

    def conv(c_out: int, c_in: int, k: int, gain: float = 1.0) -> torch.Tensor:
        return torch.randn(c_out, c_in, k, k, generator=g) * gain / math.sqrt(c_in * k * k)

    sd: dict[str, torch.Tensor] = {}

    def bn(prefix: str, c: int) -> None:
        sd[f"{prefix}.weight"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{prefix}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{prefix}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{prefix}.running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)

    sd["input_layer.0.weight"] = conv(64, 3, 3)
    bn("input_layer.1", 64)
    sd["input_layer.2.weight"] = 0.25 * torch.rand(64, generator=g)
    for u, (c_in, depth, _) in enumerate(units()):
        p = f"body.{u}"
        if c_in != depth:
            sd[f"{p}.shortcut_layer.0.weight"] = conv(depth, c_in, 1)
            bn(f"{p}.shortcut_layer.1", depth)
        bn(f"{p}.res_layer.0", c_in)
        sd[f"{p}.res_layer.1.weight"] = conv(depth, c_in, 3)
        sd[f"{p}.res_layer.2.weight"] = 0.25 * torch.rand(depth, generator=g)
        sd[f"{p}.res_layer.3.weight"] = conv(depth, depth, 3, gain=0.5)
        bn(f"{p}.res_layer.4", depth)
        sd[f"{p}.res_layer.5.fc1.weight"] = conv(depth // 16, depth, 1)
        sd[f"{p}.res_layer.5.fc2.weight"] = conv(depth, depth // 16, 1)
    for i in range(n_styles):
        for j in range(int(math.log2(style_spatial(i)))):
            sd[f"styles.{i}.convs.{2 * j}.weight"] = conv(512, 512, 3, gain=math.sqrt(2))
            sd[f"styles.{i}.convs.{2 * j}.bias"] = 0.1 * torch.randn(512, generator=g)
        sd[f"styles.{i}.linear.weight"] = torch.randn(512, 512, generator=g)  # EqualLinear: scaled by 1/sqrt(512)
        sd[f"styles.{i}.linear.bias"] = 0.1 * torch.randn(512, generator=g)
    sd["latlayer1.weight"] = conv(512, 256, 1)
    sd["latlayer1.bias"] = 0.1 * torch.randn(512, generator=g)
    sd["latlayer2.weight"] = conv(512, 128, 1)
    sd["latlayer2.bias"] = 0.1 * torch.randn(512, generator=g)
    return sd


def reference_codes(sd: dict[str, torch.Tensor], x: torch.Tensor, kind: str, latent_avg: torch.Tensor | None):
    """e4e's / pSp's forward over the state dict, then pSp.forward's ``codes + latent_avg.repeat(B, 1, 1)``."""

    def bn(t, p):
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"])

    def unit(t, p, c_in, depth, stride):
        if c_in == depth:
            shortcut = F.max_pool2d(t, 1, stride)
        else:
            shortcut = bn(F.conv2d(t, sd[f"{p}.shortcut_layer.0.weight"], stride=stride), f"{p}.shortcut_layer.1")
        r = bn(t, f"{p}.res_layer.0")
        r = F.conv2d(r, sd[f"{p}.res_layer.1.weight"], padding=1)
        r = F.prelu(r, sd[f"{p}.res_layer.2.weight"])
        r = F.conv2d(r, sd[f"{p}.res_layer.3.weight"], stride=stride, padding=1)
        r = bn(r, f"{p}.res_layer.4")
        s = F.relu(F.conv2d(F.adaptive_avg_pool2d(r, 1), sd[f"{p}.res_layer.5.fc1.weight"]))
        r = r * torch.sigmoid(F.conv2d(s, sd[f"{p}.res_layer.5.fc2.weight"]))
        return r + shortcut

    def style(i, t):
        for j in range(int(math.log2(style_spatial(i)))):
            p = f"styles.{i}.convs.{2 * j}"
            t = F.leaky_relu(F.conv2d(t, sd[f"{p}.weight"], sd[f"{p}.bias"], stride=2, padding=1))
        t = t.view(-1, 512)
        return F.linear(t, sd[f"styles.{i}.linear.weight"] / math.sqrt(512), sd[f"styles.{i}.linear.bias"])

    def upsample_add(a, b):
        return F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=True) + b

    n = 0
    while f"styles.{n}.linear.weight" in sd:
        n += 1
    t = F.prelu(bn(F.conv2d(x, sd["input_layer.0.weight"], padding=1), "input_layer.1"), sd["input_layer.2.weight"])
    for u, (c_in, depth, stride) in enumerate(units()):
        t = unit(t, f"body.{u}", c_in, depth, stride)
        if u == 6:
            c1 = t
        elif u == 20:
            c2 = t
        elif u == 23:
            c3 = t
    if kind == "e4e":  # Encoder4Editing.forward at ProgressiveStage.Inference
        w0 = style(0, c3)
        w = w0.repeat(n, 1, 1).permute(1, 0, 2)
        features = c3
        for i in range(1, min(18 + 1, n)):
            if i == 3:
                p2 = upsample_add(c3, F.conv2d(c2, sd["latlayer1.weight"], sd["latlayer1.bias"]))
                features = p2
            elif i == 7:
                features = upsample_add(p2, F.conv2d(c1, sd["latlayer2.weight"], sd["latlayer2.bias"]))
            w[:, i] += style(i, features)
        codes = w
    else:  # GradualStyleEncoder.forward
        latents = [style(j, c3) for j in range(3)]
        p2 = upsample_add(c3, F.conv2d(c2, sd["latlayer1.weight"], sd["latlayer1.bias"]))
        latents += [style(j, p2) for j in range(3, min(7, n))]
        p1 = upsample_add(p2, F.conv2d(c1, sd["latlayer2.weight"], sd["latlayer2.bias"]))
        latents += [style(j, p1) for j in range(7, n)]
        codes = torch.stack(latents[:n], dim=1)
    if latent_avg is not None:
        codes = codes + latent_avg.repeat(codes.shape[0], 1, 1)
    return codes


def save_e4e_checkpoint(path, encoder_state, latent_avg=None, opts=None, decoder=True) -> None:
    """e4e's training-checkpoint format: {'state_dict': encoder.* + decoder.*, 'opts': vars(opts), 'latent_avg'}."""
    state = {f"encoder.{k}": v for k, v in encoder_state.items()}
    if decoder:  # a couple of the decoder's keys: magec ignores them
        state["decoder.style.1.weight"] = torch.randn(512, 512)
        state["decoder.input.input"] = torch.randn(1, 512, 4, 4)
    ckpt: dict = {"state_dict": state}
    ckpt["opts"] = (
        opts
        if opts is not None
        else {"encoder_type": "Encoder4Editing", "start_from_latent_avg": True, "stylegan_size": 32, "lr": 1e-4}
    )
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    torch.save(ckpt, path)


# ---- fixtures ----------------------------------------------------------------------------------------------


N_STYLES = 8  # a 32-px generator: blocks 0-2 coarse, 3-6 middle, 7 fine (every part of the pyramid is used)


def generator(resolution: int = 32, style_dim: int = 512) -> StyleGAN2Generator:
    channels = tuple(8 for _ in range(int(math.log2(resolution)) - 1))
    config = StyleGAN2Config(resolution=resolution, style_dim=style_dim, n_mlp=2, channels=channels)
    return StyleGAN2Generator.random(config, seed=1, w_avg_samples=100)


@pytest.fixture(scope="module")
def gen32() -> StyleGAN2Generator:
    return generator(32)


@pytest.fixture(scope="module")
def ref_state() -> dict[str, torch.Tensor]:
    return e4e_reference_state(N_STYLES, seed=3)


@pytest.fixture(scope="module")
def avg() -> torch.Tensor:
    return torch.randn(N_STYLES, 512, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def e4e_file(ref_state, avg, tmp_path_factory):
    path = tmp_path_factory.mktemp("e4e") / "e4e_test_encode.pt"
    save_e4e_checkpoint(path, ref_state, avg)
    return path


@pytest.fixture(scope="module")
def face() -> torch.Tensor:
    return torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(7)) * 2 - 1


def one_line_naming(exc: pytest.ExceptionInfo, path, *needles: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and str(path) in text, text
    for needle in needles:
        assert needle in text, text
    return text


# ---- equal outputs --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_e4e_checkpoint_loads_strictly_and_matches_the_reference(e4e_file, ref_state, avg, gen32, face):
    encoder = load_e4e_encoder(e4e_file, gen32, "cpu", kind="e4e")
    assert encoder.spec == f"e4e:{e4e_file}" and encoder.resolution == 256 and encoder.space == "w+"
    assert encoder.code_shape == (N_STYLES, 512) and not encoder.training
    with torch.no_grad():
        got = encoder(face)
        want = reference_codes(ref_state, face, "e4e", avg)
    assert got.shape == (1, N_STYLES, 512)
    assert want.abs().mean() > 0.1  # the comparison is not between near-zero codes
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # e4e's codes are w0 + per-layer deltas: every layer differs from layer 0 (the deltas are used)
    assert all((got[0, i] - got[0, 0]).abs().max() > 1e-3 for i in range(1, N_STYLES))
    with torch.no_grad():
        image = gen32.synthesize(got, space="w+")
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()
    encoder.train()
    assert not encoder.training  # BatchNorm never leaves its published statistics


@pytest.mark.slow
def test_the_e4e_spec_reaches_the_same_loader(e4e_file, gen32, face):
    """``--init e4e:PATH`` and ``--encoder e4e:PATH`` go through ``load_encoder``: the same strict load and codes."""
    from magec.encoders.loading import load_encoder

    direct = load_e4e_encoder(e4e_file, gen32, "cpu", kind="e4e")
    via_spec = load_encoder(f"e4e:{e4e_file}", gen32, "cpu")
    with torch.no_grad():
        torch.testing.assert_close(via_spec(face), direct(face), rtol=0, atol=0)
    with pytest.raises(MagecError, match="needs the checkpoint path"):
        load_encoder("e4e:", gen32, "cpu")


@pytest.mark.slow
def test_psp_checkpoint_matches_the_reference(ref_state, gen32, face, tmp_path):
    path = tmp_path / "psp_test_encode.pt"
    avg_w = torch.randn(512, generator=torch.Generator().manual_seed(9))  # one W, broadcast to every layer
    opts = {"encoder_type": "GradualStyleEncoder", "start_from_latent_avg": True, "input_nc": 3}
    save_e4e_checkpoint(path, ref_state, avg_w, opts)
    encoder = load_e4e_encoder(path, gen32, "cpu", kind="psp")
    assert encoder.spec == f"psp:{path}"
    with torch.no_grad():
        got = encoder(face)
        want = reference_codes(ref_state, face, "psp", avg_w)
        e4e_head = reference_codes(ref_state, face, "e4e", avg_w)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got - e4e_head).abs().max() > 1e-2  # the heads differ: pSp's codes are not w0 + deltas


@pytest.mark.slow
def test_codes_are_not_offset_when_the_options_do_not_start_from_the_average(ref_state, avg, gen32, face, tmp_path):
    path = tmp_path / "no_avg.pt"
    opts = {"encoder_type": "Encoder4Editing", "start_from_latent_avg": False}
    save_e4e_checkpoint(path, ref_state, avg, opts)  # a stored latent_avg that e4e's forward would not add
    encoder = load_e4e_encoder(path, gen32, kind="e4e")
    small = face[:, :, :64, :64]  # the layout is size-agnostic; 64 px keeps this test quick
    with torch.no_grad():
        torch.testing.assert_close(
            encoder.encode_resized(small), reference_codes(ref_state, small, "e4e", None), rtol=1e-5, atol=1e-5
        )


@pytest.mark.slow
def test_describe_and_doctor_say_what_the_file_is(e4e_file, capsys, tmp_path):
    text = describe_encoder_checkpoint(e4e_file)
    assert text.startswith("e4e encoder (Encoder4Editing over IR-SE50, 8 W+ codes of 512: for a 32-px StyleGAN2")
    assert "e4e:PATH" in text
    gen_file = tmp_path / "g.pt"
    torch.save({"g_ema": generator(32).state_dict()}, gen_file)
    assert describe_encoder_checkpoint(gen_file) is None  # not an encoder: the generator loader says what it is
    assert main(["doctor", "--checkpoint", str(e4e_file)]) == 0
    out = capsys.readouterr().out
    assert f"[usable] encoder checkpoint {e4e_file}: e4e encoder" in out


@pytest.mark.slow
def test_doctor_checks_an_encoder_against_the_generators_given_with_it(e4e_file, tmp_path, capsys):
    fits, other = tmp_path / "g32.pt", tmp_path / "g64.pt"
    torch.save({"g_ema": generator(32).state_dict()}, fits)
    torch.save({"g_ema": generator(64).state_dict()}, other)
    assert main(["doctor", "--checkpoint", str(fits), "--checkpoint", str(e4e_file)]) == 0
    assert "fits the generator" in capsys.readouterr().out
    assert main(["doctor", "--checkpoint", str(other), "--checkpoint", str(e4e_file)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("magec: error:")]
    assert len(errors) == 1 and str(e4e_file) in errors[0], errors
    assert "made for a 32-px StyleGAN2" in errors[0] and "(64 px)" in errors[0], errors


# ---- refusals: one line naming the file ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_mismatched_generator_is_refused(e4e_file, tmp_path):
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(e4e_file, generator(64), kind="e4e")
    one_line_naming(exc, e4e_file, "made for a 32-px StyleGAN2 (8 W+ codes", "(10, 512)")
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(e4e_file, generator(32, style_dim=64), kind="e4e")
    one_line_naming(exc, e4e_file, "(8, 64)")


@pytest.mark.slow
def test_a_generator_without_w_plus_is_refused(e4e_file, dcgan):
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(e4e_file, dcgan, kind="e4e")
    one_line_naming(exc, e4e_file, "has no W+")


@pytest.mark.slow
def test_nan_weights_are_refused(ref_state, avg, gen32, tmp_path):
    path = tmp_path / "nan.pt"
    state = dict(ref_state)
    state["body.5.res_layer.1.weight"] = state["body.5.res_layer.1.weight"].clone()
    state["body.5.res_layer.1.weight"].view(-1)[17] = float("nan")
    save_e4e_checkpoint(path, state, avg)
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(path, gen32)
    one_line_naming(exc, path, "body.5.res_layer.1.weight holds NaN")
    with pytest.raises(MagecError) as exc:
        describe_encoder_checkpoint(path)
    one_line_naming(exc, path, "holds NaN")
    bad_avg = avg.clone()
    bad_avg[2, 3] = float("inf")
    save_e4e_checkpoint(path, ref_state, bad_avg)
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(path, gen32)
    one_line_naming(exc, path, "latent_avg holds NaN or infinite")


def tiny_layout(names: list[str]) -> dict[str, torch.Tensor]:
    """The given keys with one-element tensors: enough for every check that comes before the shapes."""
    return {k: torch.zeros(1) for k in names}


def test_missing_unexpected_and_misshapen_keys_are_named(ref_state, gen32, tmp_path):
    path = tmp_path / "keys.pt"
    names = [k for k in ref_state if k != "body.3.res_layer.1.weight"] + ["body.3.extra.weight"]
    save_e4e_checkpoint(path, tiny_layout(names), torch.zeros(512))
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(path, gen32)
    one_line_naming(
        exc, path, "Encoder4Editing layout", "1 missing key(s) e.g. body.3.res_layer.1.weight", "body.3.extra.weight"
    )
    save_e4e_checkpoint(path, tiny_layout(list(ref_state)), torch.zeros(512))
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(path, gen32)
    one_line_naming(exc, path, "input_layer.0.weight has shape (1,), expected (64, 3, 3, 3)")


@pytest.mark.parametrize(
    ("content", "kind", "needle"),
    [
        ({"g_ema": {"style.1.weight": torch.zeros(1)}, "latent_avg": torch.zeros(512)}, "e4e", "rosinality StyleGAN2"),
        (
            {"input_layer.0.weight": torch.zeros(1), "body.0.res_layer.0.weight": torch.zeros(1)}
            | {"output_layer.3.weight": torch.zeros(1)},
            "e4e",
            "ArcFace IR-SE50",
        ),
        ({"state_dict": {"net.conv.weight": torch.zeros(1)}}, "psp", "no 'encoder.*' keys (found e.g. net.conv"),
        ([torch.zeros(3)], "e4e", "expected a dict with 'state_dict'"),
        (
            {"state_dict": {"encoder.styles.0.linear.weight": torch.zeros(1)}}
            | {"opts": {"encoder_type": "Encoder4Editing"}},
            "psp",
            "is an e4e checkpoint (encoder_type Encoder4Editing), not psp: give it as e4e:PATH",
        ),
        (
            {"state_dict": {"encoder.linear.weight": torch.zeros(1)}}
            | {"opts": {"encoder_type": "BackboneEncoderUsingLastLayerIntoW"}},
            "psp",
            "encoder_type 'BackboneEncoderUsingLastLayerIntoW' is not supported",
        ),
        (
            {"state_dict": {"encoder.input_layer.0.weight": torch.zeros(64, 1, 3, 3)}, "opts": {}},
            "psp",
            "reads 1-channel inputs",
        ),
        (
            {"state_dict": {"encoder.styles.0.linear.weight": torch.zeros(1)}, "latent_avg": torch.zeros(14, 512)},
            "e4e",
            "latent_avg has shape (14, 512)",
        ),
        (
            {"state_dict": {"encoder.styles.0.linear.weight": torch.zeros(1)}, "opts": {"start_from_latent_avg": True}},
            "e4e",
            "holds no latent_avg",
        ),
    ],
    ids=[
        "rosinality",
        "arcface",
        "no-encoder-keys",
        "not-a-dict",
        "e4e-as-psp",
        "other-encoder-type",
        "sketch-psp",
        "latent-avg-shape",
        "no-latent-avg",
    ],
)
def test_other_layouts_are_refused_saying_what_they_are(content, kind, needle, gen32, tmp_path):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(path, gen32, kind=kind)
    one_line_naming(exc, path, needle)


@pytest.mark.slow
def test_unreadable_files_are_refused(e4e_file, gen32, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(e4e_file.read_bytes()[: 1 << 20])
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(truncated, gen32)
    one_line_naming(exc, truncated, "not loadable")
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(tmp_path / "absent.pt", gen32)
    one_line_naming(exc, tmp_path / "absent.pt", "no such file")
    from safetensors.torch import save_file

    st = tmp_path / "mine.safetensors"
    save_file({"w": torch.zeros(2)}, str(st))
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(st, gen32)
    one_line_naming(exc, st, "is a safetensors file")


class _Payload:
    def __reduce__(self):
        return (exec, ("open('pwned', 'w').close()",))


def test_a_pickle_payload_is_never_run(gen32, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"encoder.x": _Payload()}}, path)
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(path, gen32)
    one_line_naming(exc, path, "safe loader")
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(MagecError) as exc:
        load_e4e_encoder(path, gen32, kind="stylegan")
    assert "e4e, psp" in str(exc.value)
