"""MAGEC started from an encoder: ``invert(init=...)``, the ``encoder`` / ``encoder+magec`` methods (from z for the
DCGAN, from W+ for StyleGAN2), the missing-encoder and bad-start lines, and ``evaluate`` with these methods."""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest
import torch
from torch import nn

from magec.encoders.base import Encoder
from magec.errors import MagecError
from magec.inversion import invert, method_config
from magec.inversion.config import (
    ENCODER_LR,
    ENCODER_METHODS,
    ENCODER_STEPS_FRACTION,
    METHODS,
    PAPER_METHODS,
    PTI_METHODS,
    needs_encoder,
)
from magec.inversion.optimizer import _magec_codes
from magec.losses.magec_loss import build_magec_loss
from magec.losses.mse import mse_per_image


class LookupEncoder(Encoder):
    """A test encoder that knows the true codes of some images: it returns the code of the nearest known image
    plus a little seeded noise (a good, imperfect start, as a trained encoder gives)."""

    spec = "lookup-encoder"

    def __init__(self, images: torch.Tensor, codes: torch.Tensor, space: str, noise: float = 0.05) -> None:
        super().__init__()
        self.resolution = images.shape[-1]
        self.space = space
        self.known = nn.Parameter(images.detach().clone(), requires_grad=False)
        jitter = torch.randn(codes.shape, generator=torch.Generator().manual_seed(7)) * noise
        self.codes = nn.Parameter((codes + jitter).detach().clone(), requires_grad=False)

    def encode_resized(self, images: torch.Tensor) -> torch.Tensor:
        distances = (images.flatten(1)[:, None] - self.known.flatten(1)[None]).square().mean(-1)
        return self.codes[distances.argmin(1)]


@pytest.fixture(scope="module")
def faces(dcgan):
    z = dcgan.sample_latents(3, seed=2024)
    with torch.no_grad():
        return dcgan.synthesize(z), z


@pytest.fixture(scope="module")
def encoded_pipeline(tone_pipeline, faces):
    images, z = faces
    # a start about as far from the faces as a trained encoder's (MSE 0.01-0.03; the embedded one's is 0.08)
    return replace(tone_pipeline, encoder=LookupEncoder(images, z, "z", noise=0.3))


def test_method_lists_are_derived_and_the_papers_stay_three():
    assert PAPER_METHODS == ("magec", "no-magec", "im2stylegan++")
    assert ENCODER_METHODS == ("encoder", "encoder+magec", "encoder+magec+pti")
    assert set(PTI_METHODS) == {"magec+pti", "no-magec+pti", "encoder+magec+pti"}
    assert set(ENCODER_METHODS) | set(PTI_METHODS) | set(PAPER_METHODS) == set(METHODS)
    assert [m for m in METHODS if needs_encoder(m)] == list(ENCODER_METHODS)
    full, short = method_config("magec"), method_config("encoder+magec")
    assert [p.steps for p in short.phases] == [round(p.steps * ENCODER_STEPS_FRACTION) for p in full.phases]
    weights = [[(p.mse, p.perceptual, p.magec) for p in c.phases] for c in (short, full)]
    assert weights[0] == weights[1]
    assert short.lr == ENCODER_LR and short.start == "encoder" and full.start == "mean"
    # the learning rate falls as far over the short schedule as over the paper's
    assert short.lr_at(short.total_steps - 1) / short.lr == pytest.approx(full.lr_at(full.total_steps - 1) / full.lr)
    assert method_config("encoder").phases == () and method_config("encoder").total_steps == 0
    assert method_config("encoder+magec+pti", 0.5).phases == method_config("encoder+magec", 0.5).phases


def test_encoder_method_is_exactly_g_of_e(encoded_pipeline, faces):
    images, _ = faces
    pipe = encoded_pipeline
    result = invert(pipe, images, "encoder")
    codes = pipe.encoder.encode(images)
    assert torch.equal(result.latents, codes) and result.space == "z" and result.steps == 0
    with torch.no_grad():
        assert torch.equal(result.images, pipe.generator.synthesize(codes))
    assert result.start_from == "lookup-encoder" and torch.equal(result.start, codes)
    assert len(result.history) == 1 and result.seconds > 0
    entry = result.history[0]
    assert entry["mse"] == pytest.approx(mse_per_image(result.images, images).tolist(), rel=1e-5)
    assert not result.stopped and result.tuned is None


@pytest.mark.slow
def test_encoder_magec_starts_from_the_code_and_improves_it(encoded_pipeline, faces):
    images, _ = faces
    pipe = encoded_pipeline
    result = invert(pipe, images, "encoder+magec", method_config("encoder+magec", 0.4))
    codes = pipe.encoder.encode(images)
    assert torch.equal(result.start, codes) and result.start_from == "lookup-encoder"
    with torch.no_grad():
        start_mse = mse_per_image(pipe.generator.synthesize(codes), images)
    # step 0's losses are those of the start code, before its first update
    assert result.history[0]["mse"] == pytest.approx(start_mse.tolist(), rel=1e-4)
    assert all("magec" in h for h in result.history) and result.magec_editor == "interfacegan"
    assert result.steps == method_config("encoder+magec", 0.4).total_steps == 20
    final_mse = mse_per_image(result.images, images)
    assert bool((final_mse < start_mse).all()), (final_mse, start_mse)


@pytest.mark.slow
def test_init_from_the_api_replaces_the_mean(tone_pipeline, faces):
    import magec

    images, z = faces
    start = z + 0.1
    assert magec.ENCODER_METHODS == ENCODER_METHODS and magec.Encoder is Encoder
    result = magec.invert(tone_pipeline, images, "magec", magec.method_config("magec", 0.05), init=start)
    assert result.start_from == "init" and torch.equal(result.start, start)
    assert not torch.equal(result.latents, start)  # it was optimised from there
    plain = invert(tone_pipeline, images, "no-magec", method_config("no-magec", 0.02))
    mean = tone_pipeline.generator.initial_latent()
    assert plain.start_from == "mean" and torch.equal(plain.start, mean[None].expand(3, -1))
    # a given start wins over the pipeline's encoder too
    from_init = invert(tone_pipeline, images, "encoder", init=start)
    assert torch.equal(from_init.latents, start) and from_init.start_from == "init"


def test_missing_encoder_is_one_line(tone_pipeline, faces):
    assert tone_pipeline.encoder is None
    for method in ENCODER_METHODS:
        with pytest.raises(MagecError) as caught:
            invert(tone_pipeline, faces[0], method, method_config(method, 0.05))
        text = str(caught.value)
        assert "\n" not in text and "magec prepare" in text and "--init e4e:PATH" in text and method in text


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (torch.zeros(3, 99), "shape (3, 99) do not fit"),
        (torch.zeros(2, 100), "shape (2, 100) do not fit"),
        (torch.full((3, 100), float("nan")), "NaN or infinite"),
        (torch.zeros(3, 100, dtype=torch.long), "floating-point"),
    ],
)
def test_bad_init_is_one_line(tone_pipeline, faces, bad, words):
    with pytest.raises(MagecError) as caught:
        invert(tone_pipeline, faces[0], "magec", method_config("magec", 0.05), init=bad)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_encoder_giving_nan_is_one_line_naming_it(tone_pipeline, faces):
    images, z = faces
    broken = LookupEncoder(images, torch.full_like(z, float("nan")), "z")
    with pytest.raises(MagecError, match="^lookup-encoder: the start codes hold NaN or infinite values$"):
        invert(replace(tone_pipeline, encoder=broken), images, "encoder+magec")


def test_encoder_for_another_generator_is_one_line(tone_pipeline, faces):
    images, _ = faces
    wrong = LookupEncoder(images, torch.zeros(3, 8, 16), "w+")
    with pytest.raises(MagecError, match="gives codes in 'w\\+'"):
        invert(replace(tone_pipeline, encoder=wrong), images, "encoder")


# ---- W+ starts on a small StyleGAN2 ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stylegan2_pipeline():
    from fakes import ToneDescriber
    from magec.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator
    from magec.latent.ganspace import GANSpaceConfig
    from magec.latent.linknet import LinkNetConfig
    from magec.pipeline import assemble_pipeline
    from magec.prepare import PrepareConfig, prepare_pack

    config = StyleGAN2Config(resolution=16, style_dim=16, n_mlp=2, channels=(8, 8, 8))
    generator = StyleGAN2Generator.random(config, seed=2)
    describer = ToneDescriber()
    prepare = PrepareConfig(
        n_samples=200,
        batch_size=200,
        ganspace_samples=200,
        styleflow=None,
        linknet=LinkNetConfig(max_iter=50),
        ganspace=GANSpaceConfig(components=3),
    )
    pack = prepare_pack(generator, describer, prepare, progress=False)
    return assemble_pipeline(generator, describer, pack, perceptual="describer-features", device="cpu")


@pytest.mark.slow
def test_encoder_magec_from_w_plus_optimises_w_plus_with_the_row_mean(stylegan2_pipeline):
    pipe = stylegan2_pipeline
    gen = pipe.generator
    w = gen.sample_latents(2, seed=5)
    w_plus = gen.convert_latents(w, "w", "w+")
    with torch.no_grad():
        images = gen.synthesize(w_plus, space="w+")
    encoder = LookupEncoder(images, w_plus, "w+", noise=0.2)  # rows that differ: a true W+ code
    pipe = replace(pipe, encoder=encoder)
    codes = encoder.encode(images)
    assert codes.shape == (2, *gen.spaces["w+"].shape)

    result = invert(pipe, images, "encoder+magec", method_config("encoder+magec", 0.2))
    assert result.space == "w+" and result.latents.shape == codes.shape and torch.equal(result.start, codes)
    # the MAGEC term of step 0 is Eq. 2 on the mean of the start's W+ rows
    magec = build_magec_loss(pipe.pack)
    descriptor = pipe.describer(images)
    expected = magec(codes.mean(1), descriptor, magec.targets(descriptor))
    assert result.history[0]["magec"] == pytest.approx(expected.tolist(), rel=1e-4)
    assert torch.equal(_magec_codes(codes, gen, "w+"), codes.mean(1))
    assert sum(result.history[-1]["mse"]) < sum(result.history[0]["mse"])
    # an InterfaceGAN edit added to every row moves the row mean by the same edit
    edited = pipe.editors["interfacegan"].edit(result.latents, "bright", 2.0)
    direct = pipe.editors["interfacegan"].edit(result.latents.mean(1), "bright", 2.0)
    assert torch.allclose(edited.mean(1), direct, atol=1e-6)

    only = invert(pipe, images, "encoder")
    assert only.space == "w+" and torch.equal(only.latents, codes)
    # the editing space's own codes (W) are taken as they are
    from_w = invert(pipe, images, "magec", method_config("magec", 0.05), init=w)
    assert from_w.space == "w" and torch.equal(from_w.start, w)


def test_dcgan_encoder_start_stays_in_z(encoded_pipeline, faces):
    gen = encoded_pipeline.generator
    assert gen.editing_space.name == "z" and "w+" not in gen.spaces
    result = invert(encoded_pipeline, faces[0], "encoder+magec", method_config("encoder+magec", 0.1))
    assert result.space == "z" and result.latents.shape == (3, 100)
    assert torch.equal(_magec_codes(result.latents, gen, "z"), result.latents)


# ---- evaluate ------------------------------------------------------------------------------------------


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_evaluate_runs_the_encoder_methods(tmp_path, tone_pipeline):
    from magec.evaluation.edit_plans import EditPlanConfig
    from magec.evaluation.report import write_report
    from magec.evaluation.runner import EvaluationConfig, run_evaluation
    from magec.evaluation.sources import GENERATED_SEED_OFFSET, generated_source

    source = generated_source(tone_pipeline.generator, 2, seed=3)
    images = source.load([0, 1])
    z = tone_pipeline.generator.sample_latents(2, 3 + GENERATED_SEED_OFFSET)  # the source's own latents
    pipe = replace(tone_pipeline, encoder=LookupEncoder(images, z, "z", noise=0.3))
    config = EvaluationConfig(
        methods=("encoder", "encoder+magec"),
        editors=("interfacegan",),
        plan=EditPlanConfig(edits_per_editor=1),
        reference_size=8,
        batch_size=2,
        steps_scale=0.4,
        identity=False,
    )
    paths = run_evaluation(pipe, source, tmp_path / "run", config, progress=False)
    rec = {(r["image"], r["method"]): r for r in _rows(paths.reconstruction_csv)}
    assert len(rec) == 4
    for image in source.ids:
        assert rec[image, "encoder"]["steps"] == "0"
        assert int(rec[image, "encoder+magec"]["steps"]) == method_config("encoder+magec", 0.4).total_steps
        # the short schedule refines the encoder's start (phase 1 weighs the perceptual term, not the MSE)
        assert float(rec[image, "encoder+magec"]["lpips"]) < float(rec[image, "encoder"]["lpips"])
    assert {r["method"] for r in _rows(paths.ecs_csv)} == {"encoder", "encoder+magec"}
    text = write_report(paths.root, tmp_path / "report.md").read_text()
    assert "encoder+magec" in text

    with pytest.raises(MagecError, match="magec prepare"):  # no encoder: refused before any inversion
        run_evaluation(tone_pipeline, source, tmp_path / "run2", config, progress=False)
    assert not (tmp_path / "run2" / "records").exists()


# ---- magec invert --init ---------------------------------------------------------------------------------


@pytest.fixture
def cli_setup(tone_pipeline, faces, tmp_path, monkeypatch):
    """A saved pack, one face PNG, ``load_pipeline`` giving the tone pipeline (no model files needed) and
    ``load_encoder`` giving a test encoder that knows the face; ``calls`` records what was loaded."""
    import magec.encoders.loading
    import magec.pipeline
    from magec.io.images import save_png

    pack_dir = tone_pipeline.pack.save(tmp_path / "pack")
    png = save_png(faces[0][0], tmp_path / "face.png")
    calls = {"pipeline": 0, "encoder": []}

    def load_pipeline(**kwargs):
        calls["pipeline"] += 1
        return tone_pipeline

    def load_encoder(spec, generator, device):
        calls["encoder"].append(spec)
        assert generator is tone_pipeline.generator
        return LookupEncoder(faces[0][:1], faces[1][:1], "z")

    monkeypatch.setattr(magec.pipeline, "load_pipeline", load_pipeline)
    monkeypatch.setattr(magec.encoders.loading, "load_encoder", load_encoder)
    encoder_file = tmp_path / "enc.safetensors"
    encoder_file.write_bytes(b"an encoder")
    return pack_dir, png, encoder_file, calls


def _invert(pack_dir, png, out, *extra):
    from magec.cli.main import main

    args = ["invert", str(png), "--pack", str(pack_dir), "--out", str(out), "--device", "cpu", "--identity", "none"]
    return main([*args, "--perceptual", "describer-features", "--steps-scale", "0.2", *extra])


@pytest.mark.slow
def test_cli_init_file_is_loaded_recorded_and_resumed(cli_setup, tmp_path, capsys):
    import json

    pack_dir, png, encoder_file, calls = cli_setup
    out = tmp_path / "out"
    assert _invert(pack_dir, png, out, "--method", "encoder+magec", "--init", str(encoder_file)) == 0
    assert calls["encoder"] == [str(encoder_file.resolve())]
    record = json.loads((out / "face.json").read_text())
    assert record["method"] == "encoder+magec" and record["init"] == str(encoder_file.resolve())
    assert record["request"]["init"] == str(encoder_file.resolve()) and len(record["request"]["init_sha256"]) == 64
    assert record["steps"] == method_config("encoder+magec", 0.2).total_steps
    capsys.readouterr()

    # the same command resumes (skips); another encoder file, or the mean, is another request: done again
    assert _invert(pack_dir, png, out, "--method", "encoder+magec", "--init", str(encoder_file)) == 0
    assert "already inverted" in capsys.readouterr().err
    encoder_file.write_bytes(b"another encoder")
    assert _invert(pack_dir, png, out, "--method", "encoder+magec", "--init", str(encoder_file)) == 0
    assert "already inverted" not in capsys.readouterr().err
    new = json.loads((out / "face.json").read_text())
    assert new["request"]["init_sha256"] != record["request"]["init_sha256"]

    # a paper method started from the encoder: its own schedule, from the encoder's code
    out2 = tmp_path / "out2"
    assert _invert(pack_dir, png, out2, "--method", "no-magec", "--init", str(encoder_file)) == 0
    paper = json.loads((out2 / "face.json").read_text())
    assert paper["steps"] == method_config("no-magec", 0.2).total_steps and paper["init"] == str(encoder_file.resolve())
    assert _invert(pack_dir, png, out2, "--method", "no-magec") == 0  # the mean now: not the same request
    assert "already inverted" not in capsys.readouterr().err
    assert "init" not in json.loads((out2 / "face.json").read_text())["request"]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--method", "encoder+magec", "--init", "mean"), "argument --init: mean: --method encoder+magec starts"),
        (("--init", "missing.safetensors"), "missing.safetensors: no such encoder file"),
        (("--init", "e4e:"), "needs the checkpoint path after the colon"),
        (("--method", "encoder"), "has no encoder (encoder.safetensors) for --init encoder"),
        (("--init", "encoder"), "magec train-encoder"),
    ],
)
def test_cli_bad_init_is_one_line_before_models_load(cli_setup, tmp_path, capsys, extra, words):
    pack_dir, png, _, calls = cli_setup
    out = tmp_path / "bad"
    assert _invert(pack_dir, png, out, *extra) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("magec: error: ") and words in err[-1], err
    assert calls == {"pipeline": 0, "encoder": []} and (not out.exists() or not any(out.iterdir()))


def test_cli_encoder_method_without_an_encoder_in_the_pipeline(cli_setup, tmp_path, capsys):
    pack_dir, png, _, calls = cli_setup
    (pack_dir / "encoder.safetensors").write_bytes(b"the pack's encoder")  # present, but the pipeline has none
    assert _invert(pack_dir, png, tmp_path / "o", "--method", "encoder") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "starts from an encoder, and this pipeline has none" in err[-1] and calls["pipeline"] == 1


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--methods", "magec", "encoder"), "has no encoder (encoder.safetensors)"),
        (("--methods", "magec", "--encoder", "e4e:x.pt"), "argument --encoder: only the encoder methods use it"),
        (("--methods", "encoder+magec", "--encoder", "nowhere.safetensors"), "nowhere.safetensors: no such encoder"),
        (("--methods", "encoder", "--encoder", "mean"), "mean is not an encoder"),
    ],
)
def test_cli_evaluate_refuses_a_missing_encoder_before_models_load(cli_setup, tmp_path, capsys, extra, words):
    from magec.cli.main import main

    pack_dir, _, _, calls = cli_setup
    args = ["evaluate", "--pack", str(pack_dir), "--generated", "2", "--out", str(tmp_path / "run"), *extra]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("magec: error: ") and words in err[-1], err
    assert calls["pipeline"] == 0 and not (tmp_path / "run").exists()
