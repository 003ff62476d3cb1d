"""The studio's instant first look: with an encoder in the pipeline, a photo's encoder projection comes at once
(editable), and the chosen method's projection, optimised in the queue, replaces it when it lands
(``Studio.instant_projection``, ``Studio.refine``, ``FirstLook``; the page's handlers in ``photo_inputs``)."""

from __future__ import annotations

import threading
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from magec.encoders.base import Encoder
from magec.errors import MagecError
from magec.inversion.outputs import load_latent
from magec.io.images import pil_to_tensor
from magec.render import render_latent
from magec.studio.jobs import CANCELLED, DONE, QUEUED


class TinyEncoder(Encoder):
    """A small random conv net to the DCGAN's z (the studio's latency and plumbing do not depend on weights)."""

    spec, resolution, space = "tiny-test-encoder", 32, "z"

    def __init__(self, dim: int = 100, code_dim: int | None = None, poison: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(16, 32, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(32 * 8 * 8, dim),
        )  # fmt: skip
        self.dim, self.code_dim, self.poison = dim, code_dim, poison
        self.calls = 0

    def encode_resized(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        code = self.net(images) * 3.0
        return code * float("nan") if self.poison else code

    @property
    def code_shape(self) -> tuple[int, ...] | None:
        return (self.code_dim,) if self.code_dim is not None else None


@pytest.fixture()
def encoder_pipeline(tone_pipeline):
    return replace(tone_pipeline, encoder=TinyEncoder())


@pytest.fixture()
def studio(encoder_pipeline, tmp_path):
    from magec.studio.session import Studio

    s = Studio(encoder_pipeline, steps_scale=0.05, upload_root=tmp_path)
    yield s
    s.close()


def _hold_queue(studio) -> threading.Event:
    """Keep the studio's queue busy with another viewer's job until the returned event is set."""
    release = threading.Event()
    studio.queue.submit("someone else", lambda job: release.wait(60))
    return release


def test_the_encoders_code_comes_first_and_the_methods_projection_replaces_it(studio, encoder_pipeline):
    photo = studio.example("generated", 3)
    release = _hold_queue(studio)
    try:
        first = studio.first_look("me", photo, "magec")
        instant = first.instant
        # Stage one: exactly the encoder's code for the framed square, named as such, before the job has run.
        expected = encoder_pipeline.encoder(pil_to_tensor(photo.image))
        assert torch.equal(instant.latent, expected) and instant.space == "z" and instant.latent.shape == (1, 100)
        assert instant.instant and instant.method == "encoder" and instant.shown_as == "instant (encoder)"
        assert instant.steps == 0 and 0 < instant.seconds < 5
        assert first.job.state == QUEUED and first.refined is None and first.current is instant
        assert studio.busy("me") and not studio.busy("nobody")
        # Editing works before the job lands: the sliders draw the encoder's code edited, as `magec edit` would.
        spec = next(s for s in studio.sliders if s.editor == "interfacegan")
        moved = studio.render(instant, {spec.key: spec.maximum})
        assert torch.equal(moved, render_latent(encoder_pipeline, expected, "z", None, {spec.key: spec.maximum}))
        assert (moved - studio.render(instant, {})).abs().mean() > 0.01
        files = {p.name: p for p in studio.downloads(instant, {spec.key: spec.maximum})}
        saved = load_latent(files["studio-encoder.latent.safetensors"])
        assert (
            torch.equal(saved.latent.cpu().reshape(instant.latent.shape), instant.latent)
            and saved.metadata["method"] == "encoder"
        )
        assert first.job.state == QUEUED  # all of this while the method's inversion still waited
    finally:
        release.set()
    # Stage two: the method's projection replaces it; the same slider values draw the refined latent.
    assert first.job.wait(120) and first.job.state == DONE, first.job.error
    refined = first.refined
    assert refined is not None and first.current is refined and not studio.busy("me")
    assert refined.method == "magec" and not refined.instant and refined.shown_as == "magec"
    assert refined.steps > 0 and refined.framed is photo
    assert not torch.equal(refined.latent, instant.latent)
    assert not torch.equal(studio.render(refined, {spec.key: spec.maximum}), moved)


def test_a_cancelled_refinement_leaves_the_encoders_projection(studio):
    release = _hold_queue(studio)
    try:
        first = studio.first_look("me", studio.example("generated", 4), "magec+pti")
        assert studio.cancel("me") == 1
        assert first.job.wait(5) and first.job.state == CANCELLED
        assert first.refined is None and first.current is first.instant and not studio.busy("me")
    finally:
        release.set()


def test_without_an_encoder_nothing_changes(tone_pipeline):
    from magec.studio.session import Studio

    studio = Studio(tone_pipeline)
    try:
        photo = studio.example("generated")
        assert not studio.has_encoder
        assert studio.instant_projection(photo) is None and studio.first_look("me", photo, "magec") is None
        assert not studio.busy("me")  # nothing was queued
    finally:
        studio.close()


def test_an_encoder_that_does_not_fit_is_refused_in_one_line(tone_pipeline):
    from magec.studio.session import Studio

    with pytest.raises(MagecError, match="tiny-test-encoder: gives z codes of shape \\(50,\\).*another generator"):
        Studio(replace(tone_pipeline, encoder=TinyEncoder(code_dim=50)))
    unknown = Studio(replace(tone_pipeline, encoder=TinyEncoder(dim=50)))  # shape known only once it runs
    poisoned = Studio(replace(tone_pipeline, encoder=TinyEncoder(poison=True)))
    try:
        with pytest.raises(MagecError, match=r"code of shape \(50,\), but dcgan-face needs z codes of shape \(100,\)"):
            unknown.instant_projection(unknown.example("generated"))
        with pytest.raises(MagecError, match="NaN"):
            poisoned.instant_projection(poisoned.example("generated"))
    finally:
        unknown.close()
        poisoned.close()


# -- the page's two stages (the Editor tab built alone, its handlers called as Gradio calls them) ---------------
def _handlers(gr, studio) -> tuple:
    from magec.studio.app import editor_tab

    with gr.Blocks() as page:
        state = gr.State({})
        tab = editor_tab(studio, state)
    fns = {f.fn.__name__: f.fn for f in page.fns.values() if f.fn is not None}
    return page, tab, state, fns


def test_the_page_shows_the_encoders_projection_then_swaps_in_the_methods(gr, studio):
    page, tab, state, fns = _handlers(gr, studio)
    request = SimpleNamespace(session_hash="viewer")
    spec_index = next(k for k, s in enumerate(studio.sliders) if s.editor == "interfacegan")
    values = [0.0] * len(studio.sliders)
    values[spec_index] = studio.sliders[spec_index].maximum

    # The generated example's own request: the framed photo and the encoder's look in its first message, the
    # images alone (all the user needs to start editing), F's captions and the lines after them.
    stream = fns["on_generated_look"](5, {}, "magec", request, *values)
    shown = next(stream)
    st = shown[state]
    assert shown[tab.framed] is not None and st["projection"].instant and st["projection"].framed is st["photo"]
    assert shown[tab.shown["edited"]] is not None and shown[tab.shown["projection"]] is not None
    assert shown[tab.captions["projection"]] == "instant (encoder): …"  # which projection, before F has spoken
    assert tab.status not in shown and tab.captions["edited"] not in shown
    described = next(stream)
    assert described[tab.captions["projection"]].startswith("instant (encoder): ")
    assert described[tab.captions["edited"]] not in ("", "…") and "instant (encoder)" in described[tab.status]
    assert described[tab.pasted] is None  # a generated face has no photo to paste into
    queued = next(stream)  # then the method is queued behind it, and the request ends
    assert list(stream) == []
    st = queued[state]
    first = st["first_look"]
    assert first.method == "magec" and first.instant is st["projection"]
    for _ in fns["follow"](st):  # the chained request: progress until the inversion ends
        pass
    assert first.job.state == DONE

    # A newer photo in the page state: the landed projection is not given to it.
    other = {**st, "photo": studio.example("generated", 6)}
    assert fns["landed"](other, request, *values) == {}
    landed = fns["landed"](st, request, *values)
    assert landed[state]["projection"] is first.refined and "first_look" not in landed[state]
    assert landed[tab.captions["projection"]].startswith("magec: ")
    assert "replaced the instant (encoder) projection" in landed[tab.progress]
    assert tab.shown["original"] not in landed  # unchanged
    assert fns["landed"](landed[state], request, *values) == {}  # adopted once

    # A photo whose framing failed leaves the previous photo (with its projection) in the state: nothing to do.
    failed = list(fns["on_upload_look"](str(studio.upload_root / "gone.png"), 0, landed[state], "magec", request))
    assert failed[0][state] is landed[state] and failed[0][tab.pasted] is None
    assert len(failed) == 2 and "refused" not in failed[1][tab.status]  # the framing's own line
    assert list(fns["follow"](failed[0][state])) == [{}]


def test_the_page_without_an_encoder_is_wired_as_before(gr, tone_pipeline, tmp_path):
    from magec.studio.session import Studio

    plain = Studio(tone_pipeline, upload_root=tmp_path)
    try:
        _, _, _, fns = _handlers(gr, plain)
        assert not {"on_upload_look", "follow", "landed"} & set(fns) and "on_upload" in fns
    finally:
        plain.close()


@pytest.mark.slow
def test_an_uploads_first_look_is_made_on_arrival(studio, encoder_pipeline, monkeypatch):
    """``prepare_upload`` frames an upload and makes its first look (the encoder's code, drawn) before the page asks:
    ``instant_projection`` then hands over that very projection, to the photo it was made from only; and
    ``warm_up`` takes the example through the same steps without leaving anything behind."""
    from PIL import Image
    from skimage import data

    from magec.studio import session

    pytest.importorskip("dlib")
    encoder = encoder_pipeline.encoder
    upload = studio.upload_root / "me.png"
    Image.fromarray(data.astronaut()).save(upload)
    studio.prepare_upload(upload)
    framed = studio.read_upload(upload, owner="me")
    assert encoder.calls == 1  # made with the framing
    draws = []
    real = session.render_latent
    monkeypatch.setattr(session, "render_latent", lambda *a, **k: draws.append(1) or real(*a, **k))
    look = studio.instant_projection(framed, "me")
    assert encoder.calls == 1 and look.instant and look.framed is framed
    studio.projection_image(look)
    assert draws == []  # drawn ahead: the page's first render is a cache hit
    assert studio.instant_projection(framed, "me") is look and encoder.calls == 1  # the first-look route asks too
    other = studio.read_upload(studio.upload_root / "me.png", owner="me")  # re-framed: no look kept for it
    again = studio.instant_projection(other)
    assert again is not look and encoder.calls == 2 and again.framed is other
    studio.end_session("me")
    assert look.released  # the look belongs to the viewer who uploaded

    before = dict(studio._owned)
    studio.warm_up()
    done = threading.Event()
    studio._ahead.run(done.set)  # after the warm-up on the same thread
    assert done.wait(60) and encoder.calls == 3 and studio._owned == before
