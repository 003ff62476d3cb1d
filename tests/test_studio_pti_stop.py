"""A ``+pti`` inversion cancelled during its pivotal tuning keeps its latent and says so; the viewer then finishes
the tuning or discards it (``Studio.finish_tuning`` / ``discard_tuning``), at the session level."""

from __future__ import annotations

import pytest
import torch

from magec.errors import MagecError
from magec.inversion import method_config
from magec.inversion.outputs import load_latent
from magec.render import render_latent
from magec.studio.jobs import CANCELLED, DONE

STEPS_SCALE = 0.02  # magec: a few dozen latent steps; PTI: 7 tuning steps


@pytest.fixture()
def studio(tone_pipeline, tmp_path):
    from magec.studio.session import Studio

    s = Studio(tone_pipeline, steps_scale=STEPS_SCALE, upload_root=tmp_path)
    yield s
    s.close()


def _cancel_in_tuning(studio, framed, after: int = 2):
    """``magec+pti`` of ``framed``, cancelled once ``after`` tuning steps have run."""
    latent_steps = method_config("magec+pti", STEPS_SCALE).total_steps
    job = studio.submit("viewer", framed, ("magec+pti",))
    report = job.report

    def cancelling(step, total, label=""):
        stop = report(step, total, label)
        if step >= latent_steps + after:
            job.cancel()
            return True
        return stop

    job.report = cancelling
    assert job.wait(120)
    return job, latent_steps


def test_a_pti_stopped_in_its_tuning_keeps_the_latent_and_says_so(studio, one_thread):
    from magec.studio.session import FirstLook

    framed = studio.example("astronaut")
    job, latent_steps = _cancel_in_tuning(studio, framed)
    assert job.state == CANCELLED
    stopped = job.result["magec+pti"]
    assert stopped.tuning_stopped and stopped.tuned is None  # the half-tuned generator is not kept
    assert stopped.steps == latent_steps and not stopped.stopped  # the latent part is done
    assert 1 <= stopped.tuning_steps < studio.tuning_steps == 7
    # Drawn meanwhile with the pipeline's generator (what discarding gives).
    base = render_latent(studio.pipeline, stopped.latent, stopped.space, stopped.noise, {})
    assert torch.equal(studio.render(stopped, {}), base)
    # In the first look, such a projection replaces the encoder's: its latent is the method's, complete.
    assert FirstLook(stopped, job, "magec+pti").current is stopped

    # A latent cancelled before its tuning keeps nothing to finish.
    early = studio.submit("viewer", framed, ("magec",))
    assert early.wait(120) and early.state == DONE
    with pytest.raises(MagecError, match="nothing to finish"):
        studio.finish_tuning("viewer", early.result["magec"])
    with pytest.raises(MagecError, match="nothing to discard"):
        studio.discard_tuning(early.result["magec"])


@pytest.mark.slow
def test_finishing_a_stopped_tuning_gives_what_an_uninterrupted_run_gives(studio, one_thread):
    framed = studio.example("astronaut")
    job, _ = _cancel_in_tuning(studio, framed)
    stopped = job.result["magec+pti"]

    finishing = studio.finish_tuning("viewer", stopped)
    assert finishing.wait(120) and finishing.state == DONE, finishing.error
    assert finishing.step == finishing.total == studio.tuning_steps  # the progress counts the tuning steps
    finished = finishing.result["magec+pti"]
    assert finished.tuned is not None and not finished.tuning_stopped
    assert finished.tuning_steps == studio.tuning_steps and torch.equal(finished.latent, stopped.latent)

    whole = studio.submit("viewer", framed, ("magec+pti",))
    assert whole.wait(120) and whole.state == DONE
    uninterrupted = whole.result["magec+pti"]
    assert torch.allclose(finished.latent, uninterrupted.latent)
    assert torch.allclose(studio.render(finished, {}), studio.render(uninterrupted, {}), atol=1e-4)
    names = {p.name for p in studio.downloads(finished, {})}
    assert "studio-magec+pti.pti.safetensors" in names  # the tuned generator, as for any +pti


@pytest.mark.slow
def test_discarding_a_stopped_tuning_gives_the_untuned_latent_as_magec(studio, one_thread):
    framed = studio.example("astronaut")
    job, _ = _cancel_in_tuning(studio, framed)
    stopped = job.result["magec+pti"]
    kept = studio.discard_tuning(stopped)
    assert kept.method == "magec" and kept.tuned is None and not kept.tuning_stopped
    assert torch.equal(kept.latent, stopped.latent)
    spec = next(s for s in studio.sliders if s.editor == "interfacegan")
    values = {spec.key: spec.maximum}
    base = render_latent(studio.pipeline, kept.latent, kept.space, kept.noise, values)
    assert torch.equal(studio.render(kept, values), base)
    files = {p.name: p for p in studio.downloads(kept, values)}
    assert not [n for n in files if n.endswith(".pti.safetensors")]  # no tuned generator to pair with
    assert load_latent(files["studio-magec.latent.safetensors"]).metadata["method"] == "magec"

    # Finishing a tuning that is cancelled again keeps the latent once more.
    again = studio.finish_tuning("viewer", stopped)
    report = again.report

    def cancelling(step, total, label=""):
        report(step, total, label)
        if step >= 1:
            again.cancel()
        return again.cancelled

    again.report = cancelling
    assert again.wait(120) and again.state == CANCELLED
    still = again.result["magec+pti"]
    assert still.tuning_stopped and still.tuned is None and still.tuning_steps < studio.tuning_steps
