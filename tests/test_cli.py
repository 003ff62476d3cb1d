"""The command line on the real embedded models: prepare -> invert -> edit, previews, and refused inputs."""

import json

import pytest
import torch
from PIL import Image

from magec.cli.main import main
from magec.inversion.outputs import load_latent
from magec.io.images import save_png


@pytest.fixture(scope="module")
def pack_dir(embedded_pack, tmp_path_factory):
    return embedded_pack.save(tmp_path_factory.mktemp("pack") / "embedded")


@pytest.fixture(scope="module")
def face_png(dcgan, tmp_path_factory):
    with torch.no_grad():
        image = dcgan.synthesize(dcgan.sample_latents(1, seed=31337))[0]
    return save_png(image, tmp_path_factory.mktemp("faces") / "face.png")


@pytest.mark.slow
def test_invert_then_edit(pack_dir, face_png, tmp_path, capsys):
    out = tmp_path / "inv"
    code = main(
        [
            "invert",
            str(face_png),
            "--pack",
            str(pack_dir),
            "--method",
            "magec",
            "--steps-scale",
            "0.05",
            "--perceptual",
            "describer-features",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    record = json.loads((out / "face.json").read_text())
    assert record["method"] == "magec" and record["perceptual"] == "describer-features" and record["identity"] == "dlib"
    assert "identity" in record["history"][0]  # the embedded generator's default identity loss (--identity auto)
    assert record["steps"] == 10 and len(record["history"]) == 10
    assert record["history"][-1]["mse"] < record["history"][0]["mse"]
    saved = load_latent(out / "face.latent.safetensors")
    assert saved.latent.shape == (1, 100) and saved.space == "z" and saved.source.shape == (1, 3, 64, 64)
    assert Image.open(out / "face.png").size == (64, 64)

    edits = tmp_path / "edits"
    assert (
        main(
            [
                "edit",
                str(out / "face.latent.safetensors"),
                "--pack",
                str(pack_dir),
                "--editor",
                "interfacegan",
                "--operation",
                "male",
                "--amounts=-3,3",
                "--out",
                str(edits),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (edits / "grid.png").is_file()
    assert {p.name for p in edits.glob("interfacegan_*.png")} == {
        "interfacegan_male_-3.00.png",
        "interfacegan_male_+3.00.png",
    }
    assert (
        main(
            [
                "edit",
                str(out / "face.latent.safetensors"),
                "--pack",
                str(pack_dir),
                "--editor",
                "interpolate",
                "--out",
                str(tmp_path / "interp"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )


@pytest.mark.slow  # tests/test_bad_input.py runs the same refusals (and many more) through a subprocess
def test_bad_inputs_refused_without_partial_outputs(pack_dir, face_png, tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    out = tmp_path / "out"
    code = main(
        [
            "invert",
            str(face_png),
            str(bad),
            "--pack",
            str(pack_dir),
            "--steps-scale",
            "0.01",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("magec: error: ") and str(bad) in err[-1]
    assert not out.exists() or not any(out.iterdir())

    assert (
        main(["invert", str(tmp_path / "missing.jpg"), "--pack", str(pack_dir), "--out", str(out), "--device", "cpu"])
        == 1
    )
    assert "no such file" in capsys.readouterr().err
    assert (
        main(["invert", str(face_png), "--pack", str(tmp_path / "nopack"), "--out", str(out), "--device", "cpu"]) == 1
    )
    assert "no such pack" in capsys.readouterr().err
    assert main(["edit", str(face_png), "--pack", str(pack_dir), "--out", str(out), "--device", "cpu"]) == 1
    assert "not a readable safetensors latent" in capsys.readouterr().err


@pytest.mark.slow
def test_preview_writes_labelled_grids(pack_dir, tmp_path):
    assert main(["preview", "--pack", str(pack_dir), "--out", str(tmp_path), "-n", "8", "--device", "cpu"]) == 0
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "samples.png",
        "edits-interfacegan.png",
        "edits-ganspace.png",
        "edits-sefa.png",
        "edits-interpolate.png",
    }


@pytest.mark.slow
def test_prepare_cli_writes_a_loadable_pack(tmp_path, capsys):
    out = tmp_path / "pack"
    args = ["prepare", "--out", str(out), "--samples", "300", "--device", "cpu", "--seed", "3", "--no-encoder"]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["prepare"]["seed"] == 3 and manifest["prepare"]["n_samples"] == 300
    assert manifest["generator"] == "dcgan-face" and manifest["describer"]["spec"] == "faces"
    names = ["male", "age", "smile", "neutral", "sad", "surprised"]
    assert set(manifest["linknet"]["heldout_agreement"]) == set(names) and manifest["describer_attributes"] == names
    labels = manifest["labels"]
    assert labels["aligned"] + labels["fixed_box"] == 300 and labels["aligned"] > 150
    assert "held-out agreement" in capsys.readouterr().out


@pytest.mark.parametrize("samples", ["0", "10"])
def test_prepare_refuses_too_few_samples_without_writing(tmp_path, capsys, samples):
    out = tmp_path / "pack"
    with pytest.raises(SystemExit) as exit_:
        main(["prepare", "--out", str(out), "--samples", samples, "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        exit_.value.code == 2
        and len(err) == 1
        and err[0].startswith("magec: error: argument --samples")
        and not out.exists()
    )


def test_library_refuses_what_the_cli_refuses():
    from magec.errors import MagecError
    from magec.inversion import method_config
    from magec.prepare import PrepareConfig

    with pytest.raises(MagecError, match="at least 50"):
        PrepareConfig(n_samples=10)
    with pytest.raises(MagecError, match="--lambda-magec -1: must not be negative"):
        method_config("magec", lambda_magec=-1)
    with pytest.raises(MagecError, match="finite"):
        method_config("magec", steps_scale=float("nan"))


def test_cli_defaults_match_the_library():
    from magec.cli import cmd_prepare, cmd_train_describer
    from magec.describers.celeba import ARCHITECTURES
    from magec.latent.reach import ReachConfig
    from magec.prepare import MIN_SAMPLES, PrepareConfig

    assert (cmd_prepare.DEFAULT_SAMPLES, cmd_prepare.DEFAULT_BATCH, cmd_prepare.MIN_SAMPLES) == (
        PrepareConfig.n_samples,
        PrepareConfig.batch_size,
        MIN_SAMPLES,
    )
    assert cmd_prepare.DEFAULT_SLIDER_SAMPLES == ReachConfig.samples
    assert cmd_train_describer.ARCHITECTURES == ARCHITECTURES


def test_help_and_version_do_not_load_torch():
    import subprocess
    import sys

    code = (
        "import sys; from magec.cli.main import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit: pass\n"
        "print('torch' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        .stdout.strip()
        .endswith("False")
    )


def test_the_version_is_written_once(capsys):
    """``magec/_version.py`` is the one source: the package, ``--version`` and pyproject's metadata all read it."""
    import tomllib
    from pathlib import Path

    import magec
    from magec import _version

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "magec._version.__version__"}
    assert magec.__version__ is _version.__version__
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"magec {_version.__version__}"
    pyprojecttoml = pytest.importorskip("setuptools.config.pyprojecttoml")
    resolved = pyprojecttoml.read_configuration(root / "pyproject.toml", expand=True)
    assert resolved["project"]["version"] == _version.__version__  # read statically, without importing magec


def test_log_lines_follow_stderr_when_a_host_program_swaps_it(monkeypatch):
    """``main`` run twice in one process (a notebook, a test suite) logs to the stderr of the second run,
    never into the first one's stream, which may be closed by then."""
    import io
    import logging
    import sys

    from magec.cli.main import _setup_logging

    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    _setup_logging()
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    _setup_logging()
    logging.getLogger("magec").info("chunks of %d", 7)
    assert second.getvalue().endswith("magec: chunks of 7\n")
