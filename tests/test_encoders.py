"""magec's own encoder: training from the generator alone, its files, resuming, the pack's encoder, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from magec.encoders.files import load_magec_encoder, report_path, save_encoder
from magec.encoders.loading import load_encoder
from magec.encoders.names import PACK_ENCODER
from magec.encoders.network import EncoderArchitecture, MagecEncoder
from magec.encoders.training import EncoderTrainingConfig, checkpoint_batch_size, heldout_report, train_encoder
from magec.errors import MagecError

SMALL = EncoderArchitecture(width=16, max_width=64, extra_convs=0, hidden=128)


def tiny_config(**kwargs) -> EncoderTrainingConfig:
    defaults = dict(steps=4, batch_size=4, heldout=8, architecture=SMALL, lambda_perceptual=0.0)
    return EncoderTrainingConfig(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def tiny_stylegan():
    from magec.generators.stylegan2.config import StyleGAN2Config
    from magec.generators.stylegan2.model import StyleGAN2Generator

    config = StyleGAN2Config(resolution=32, style_dim=32, channels=(16, 16, 8, 8))
    return StyleGAN2Generator.random(config, seed=1, w_avg_samples=200)


@pytest.fixture(scope="module")
def trained_dcgan(dcgan, one_thread):
    """40 steps on the embedded DCGAN with the toy F (a few seconds)."""
    from fakes import ToneDescriber

    config = tiny_config(steps=40, batch_size=8, heldout=32)
    return train_encoder(dcgan, config, describer=ToneDescriber())


@pytest.mark.slow
def test_training_lowers_the_heldout_mse_and_codes_beat_the_mean(dcgan, trained_dcgan):
    from fakes import ToneDescriber

    untrained = MagecEncoder.for_generator(dcgan, SMALL).eval()
    before = heldout_report(untrained, dcgan, ToneDescriber(), None, 32, 0)
    after = trained_dcgan.report
    assert after["encoder"]["mse"] < 0.8 * before["encoder"]["mse"], (before, after)
    # the code of G(z) is closer to z than the generator's mean code (where inversions start today)
    assert after["encoder"]["latent_mse"] < after["mean"]["latent_mse"]
    assert 0.0 <= after["encoder"]["f_agreement"] <= 1.0 and after["steps"] == 40


@pytest.mark.slow
def test_wplus_codes_are_offsets_from_the_mean_w(tiny_stylegan, one_thread):
    untrained = MagecEncoder.for_generator(tiny_stylegan, SMALL)
    assert untrained.space == "w+" and untrained.code_shape == tiny_stylegan.spaces["w+"].shape
    images = tiny_stylegan.synthesize(tiny_stylegan.sample_latents(2, 3))
    codes = untrained(images)  # zero-initialised offsets: exactly the mean W on every layer
    assert torch.allclose(codes, tiny_stylegan.initial_latent().expand_as(codes))
    result = train_encoder(tiny_stylegan, tiny_config(steps=40, batch_size=8, lambda_latent=1.0, lr=3e-3))
    assert result.report["encoder"]["latent_mse"] < result.report["mean"]["latent_mse"]


def test_same_seed_same_weights(dcgan, one_thread):
    a = train_encoder(dcgan, tiny_config(steps=2, seed=5)).encoder.state_dict()
    b = train_encoder(dcgan, tiny_config(steps=2, seed=5)).encoder.state_dict()
    c = train_encoder(dcgan, tiny_config(steps=2, seed=6)).encoder.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.slow
def test_a_resumed_run_ends_as_an_uninterrupted_one(dcgan, tmp_path, one_thread):
    config = tiny_config(steps=6, checkpoint_every=2)
    whole = train_encoder(dcgan, config)
    ckpt = tmp_path / "enc.safetensors.ckpt"
    first = train_encoder(dcgan, config, checkpoint=ckpt, callback=lambda s: s.step == 3)  # stops after step 3
    assert first.stopped and first.steps == 3 and ckpt.is_file()
    # the batch it trained with: `train-encoder` resumes with it, whatever memory the batch was sized from now
    assert checkpoint_batch_size(ckpt) == config.batch_size and checkpoint_batch_size(tmp_path / "none") is None
    resumed = train_encoder(dcgan, config, checkpoint=ckpt)
    assert resumed.resumed_from == 3 and resumed.steps == 6
    a, b = whole.encoder.state_dict(), resumed.encoder.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-5)
    with pytest.raises(MagecError, match="other settings"):  # another run's checkpoint is not continued
        train_encoder(dcgan, replace(config, seed=9), checkpoint=ckpt)


@pytest.mark.slow
def test_save_load_round_trip_gives_equal_codes(dcgan, trained_dcgan, tmp_path):
    path = save_encoder(tmp_path / "enc.safetensors", trained_dcgan.encoder, dcgan, trained_dcgan.report, {"x": 1})
    report = json.loads(report_path(path).read_text())
    assert (
        report["format"] == "magec-encoder-report"
        and report["encoder"]["mse"] == trained_dcgan.report["encoder"]["mse"]
    )
    loaded = load_encoder(str(path), dcgan, "cpu")
    images = dcgan.synthesize(dcgan.sample_latents(3, 11))
    assert torch.equal(loaded.encode(images), trained_dcgan.encoder.encode(images))
    assert loaded.architecture == SMALL and loaded.space == "z"


@pytest.mark.slow
def test_bad_encoder_files_are_one_line_naming_the_file(dcgan, tiny_stylegan, trained_dcgan, tmp_path):
    good = save_encoder(tmp_path / "good.safetensors", trained_dcgan.encoder, dcgan)
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(other), metadata={"format": "magec-latent"})
    nan = tmp_path / "nan.safetensors"
    tensors = load_file(str(good))
    tensors["out.bias"][0] = float("nan")
    from safetensors import safe_open

    with safe_open(str(good), "pt") as fh:
        save_file(tensors, str(nan), metadata=fh.metadata())
    missing = tmp_path / "missing.safetensors"
    tensors = load_file(str(good))
    del tensors["out.weight"]
    with safe_open(str(good), "pt") as fh:
        save_file(tensors, str(missing), metadata=fh.metadata())
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    untrained = MagecEncoder.for_generator(tiny_stylegan, SMALL)
    wplus = save_encoder(tmp_path / "wplus.safetensors", untrained, tiny_stylegan)
    cases = [
        (other, "not a magec encoder"),
        (nan, "NaN"),
        (missing, "missing key"),
        (garbage, "not a readable"),
        (tmp_path / "none.safetensors", "no such file"),
        (wplus, "mismatched generator resolution"),
    ]
    for path, message in cases:
        with pytest.raises(MagecError, match=message) as err:
            load_magec_encoder(path, dcgan)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_wplus_encoder_of_another_checkpoint_is_refused(tiny_stylegan, tmp_path):
    from magec.generators.stylegan2.model import StyleGAN2Generator

    path = save_encoder(tmp_path / "w.safetensors", MagecEncoder.for_generator(tiny_stylegan, SMALL), tiny_stylegan)
    assert load_magec_encoder(path, tiny_stylegan).space == "w+"
    other = StyleGAN2Generator.random(tiny_stylegan.config, seed=2, w_avg_samples=200)
    with pytest.raises(MagecError, match="mean W differs"):
        load_magec_encoder(path, other)


@pytest.mark.slow  # loads the embedded F three times
def test_the_pack_folder_holds_the_encoder_and_load_pipeline_reads_it(embedded_pack, dcgan, trained_dcgan, tmp_path):
    from magec.pipeline import load_pipeline
    from magec.prepare import attach_encoder

    pack = replace(embedded_pack, info=dict(embedded_pack.info), extra_files={})
    attach_encoder(pack, trained_dcgan, dcgan)
    folder = pack.save(tmp_path / "pack")
    assert (folder / PACK_ENCODER).is_file() and (folder / "encoder.report.json").is_file()
    index = json.loads((folder / "magec-index.json").read_text())
    assert {PACK_ENCODER, "encoder.report.json"} <= set(index["files"])
    assert json.loads((folder / "manifest.json").read_text())["encoder"]["file"] == PACK_ENCODER
    pipeline = load_pipeline(folder, "cpu", perceptual="describer-features", identity="none")
    images = dcgan.synthesize(dcgan.sample_latents(2, 8))
    assert torch.equal(pipeline.encoder.encode(images), trained_dcgan.encoder.encode(images))
    pack.save(folder)  # an existing pack is updated in place, encoder included
    assert load_pipeline(folder, "cpu", perceptual="describer-features", identity="none").encoder is not None
    bare = embedded_pack.save(tmp_path / "bare")
    assert load_pipeline(bare, "cpu", perceptual="describer-features", identity="none").encoder is None


@pytest.mark.slow  # the embedded F, twice
def test_train_encoder_cli(embedded_pack, tmp_path, capsys):
    from magec.cli.main import main
    from magec.pipeline import load_pipeline

    pack = embedded_pack.save(tmp_path / "pack")
    out = pack / PACK_ENCODER  # the pack's own encoder
    args = ["train-encoder", "--pack", str(pack), "--out", str(out), "--steps", "2", "--batch-size", "2"]
    args += ["--device", "cpu", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "held-out report" in printed and out.is_file() and report_path(out).is_file()
    assert "2 pairs per step (--batch-size)" in printed  # the batch it trains with, and why
    assert not (pack / "encoder.safetensors.ckpt").exists()
    index = json.loads((pack / "magec-index.json").read_text())["files"]
    assert {PACK_ENCODER, "encoder.report.json"} <= set(index)
    assert load_pipeline(pack, "cpu", perceptual="describer-features", identity="none").encoder is not None
    assert main(args) == 0  # its own file is replaced
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"my own weights")
    capsys.readouterr()
    assert main([*args[:3], "--out", str(mine), *args[5:]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was not written by magec" in err[0] and mine.read_bytes() == b"my own weights"


def test_config_is_validated_once():
    with pytest.raises(MagecError, match="--steps"):
        EncoderTrainingConfig(steps=-1)
    with pytest.raises(MagecError, match="magec_target"):
        EncoderTrainingConfig(magec_target="nope")
    with pytest.raises(MagecError, match="lambda-magec"):
        EncoderTrainingConfig(lambda_magec=-1.0)
    with pytest.raises(MagecError, match="nothing to train"):
        EncoderTrainingConfig(lambda_mse=0.0, lambda_latent=0.0)


def test_the_magec_term_trains_through_linknet(tone_pipeline, one_thread):
    p = tone_pipeline
    for target in ("linknet", "describer"):
        config = tiny_config(steps=2, lambda_magec=1.0, magec_target=target)
        result = train_encoder(p.generator, config, describer=p.describer, linknet=p.pack.linknet)
        assert result.steps == 2
    with pytest.raises(MagecError, match="LinkNet"):
        train_encoder(p.generator, tiny_config(lambda_magec=1.0))


def test_cli_defaults_match_the_library():
    from magec.cli import cmd_train_encoder

    assert (cmd_train_encoder.DEFAULT_STEPS, cmd_train_encoder.DEFAULT_BATCH) == (
        EncoderTrainingConfig.steps,
        EncoderTrainingConfig.batch_size,
    )


@pytest.mark.slow
def test_prepare_pack_trains_the_encoder_only_when_asked(dcgan, tmp_path, one_thread):
    from fakes import ToneDescriber
    from magec.prepare import PrepareConfig, prepare_pack

    config = PrepareConfig(n_samples=100, ganspace_samples=60, styleflow=None, sliders=None)
    plain = prepare_pack(dcgan, ToneDescriber(), config, progress=False)
    assert "encoder" not in plain.info and not plain.extra_files
    pack = prepare_pack(dcgan, ToneDescriber(), config, progress=False, encoder=tiny_config(steps=2))
    folder = pack.save(tmp_path / "pack")
    report = json.loads((folder / "encoder.report.json").read_text())
    assert report["steps"] == 2 and set(report["encoder"]) >= {"mse", "perceptual", "f_agreement", "latent_mse"}
    assert load_magec_encoder(folder / PACK_ENCODER, dcgan).code_shape == (100,)


@pytest.mark.slow
def test_bench_times_the_encoder_per_image(tone_pipeline, trained_dcgan):
    from magec.bench import encoder_ms_per_image

    assert tone_pipeline.encoder is None  # an untrained network of the same architecture is timed
    assert encoder_ms_per_image(tone_pipeline, 8, repeats=2) > 0
    with_encoder = replace(tone_pipeline, encoder=trained_dcgan.encoder, editors=dict(tone_pipeline.editors))
    assert encoder_ms_per_image(with_encoder, 8, repeats=2) > 0


@pytest.mark.slow  # a small real prepare through the command line
def test_prepare_cli_trains_the_encoder_into_the_pack_unless_told_not_to(tmp_path, monkeypatch, capsys):
    import magec.encoders.training as training
    import magec.prepare  # noqa: F401  (imported first: its EMBEDDED_ENCODER keeps the real defaults)
    from magec.cli.main import main

    monkeypatch.setattr(training, "EncoderTrainingConfig", lambda seed: tiny_config(steps=2, seed=seed))
    base = ["prepare", "--samples", "60", "--no-styleflow", "--slider-samples", "0", "--fixed-box-labels"]
    base += ["--describer", "dlib-age-gender", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "with")]) == 0
    assert "encoder (encoder.safetensors) held-out report" in capsys.readouterr().out
    assert (tmp_path / "with" / PACK_ENCODER).is_file() and (tmp_path / "with" / "encoder.report.json").is_file()
    assert main([*base, "--out", str(tmp_path / "without"), "--no-encoder"]) == 0
    assert not (tmp_path / "without" / PACK_ENCODER).exists()
