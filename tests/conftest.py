"""Shared fixtures. Tests run on CPU with few threads so the suite is stable on 2-core machines."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/fakes.py


@pytest.fixture(autouse=True, scope="session")
def _torch_settings():
    # One thread: on a busy 2-core machine small tensor ops run far slower with two spinning threads.
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def dcgan():
    from magec.generators.dcgan import DCGANFace

    return DCGANFace.from_checkpoint()


@pytest.fixture(scope="module")
def one_thread():
    """Small convolutions run several times faster on one thread when the machine's cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def dlib_describer():
    """The embedded F, ``faces`` (dlib's gender and age, face-api's expressions; male and age come first as in
    ``dlib-age-gender``); ``faces-dlib`` when face-api's files are missing."""
    from magec.describers import EMBEDDED_DESCRIBER, load_describer

    return load_describer(EMBEDDED_DESCRIBER, "cpu")


@pytest.fixture(scope="session")
def embedded_pack(dcgan, dlib_describer):
    """A small real pack (embedded DCGAN + the embedded F); 1500 samples keep it under a minute.

    Labelled on F's fixed box (``aligned_labels=False``): dlib's detector would add ~5 s; the aligned path has its
    own tests (test_faces_describer.py, and the slow ``magec prepare`` CLI test).
    """
    from magec.prepare import PrepareConfig, prepare_pack

    config = PrepareConfig(n_samples=1500, ganspace_samples=600, styleflow=None, aligned_labels=False)
    return prepare_pack(dcgan, dlib_describer, config, progress=False)


@pytest.fixture(scope="session")
def tone_pipeline(dcgan):
    """A fast pipeline: the embedded DCGAN with the toy ToneDescriber as F."""
    from fakes import ToneDescriber
    from magec.latent.reach import ReachConfig
    from magec.pipeline import assemble_pipeline
    from magec.prepare import PrepareConfig, prepare_pack

    describer = ToneDescriber()
    # 4 samples per slider reach (the default 12 was 3 of this fixture's 7 s, built once per test process)
    config = PrepareConfig(n_samples=600, ganspace_samples=300, styleflow=None, sliders=ReachConfig(samples=4))
    pack = prepare_pack(dcgan, describer, config, progress=False)
    return assemble_pipeline(dcgan, describer, pack, perceptual="describer-features", device="cpu")


@pytest.fixture()
def gr(monkeypatch, tmp_path):
    """Gradio, imported offline with its uploads under ``tmp_path`` (as ``configure_gradio`` would set)."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return pytest.importorskip("gradio")


#: The short schedules of the studio tests that invert for real (magec: a few dozen latent steps; PTI: 7 tuning steps).
STUDIO_STEPS_SCALE = 0.02


@pytest.fixture()
def studio(tone_pipeline, tmp_path):
    """A studio over the tone pipeline with short schedules and its uploads under ``tmp_path/uploads`` (modules
    that need another one define their own ``studio``)."""
    from magec.studio.session import Studio

    root = tmp_path / "uploads"
    root.mkdir()
    s = Studio(tone_pipeline, steps_scale=STUDIO_STEPS_SCALE, upload_root=root)
    yield s
    s.close()
