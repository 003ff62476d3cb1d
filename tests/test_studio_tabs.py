"""The studio page's tabs, each built alone inside a ``gr.Blocks`` (no server, no browser)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from magec.inversion.config import PAPER_METHODS
from magec.studio.jobs import CANCELLED


@pytest.fixture()
def studio(tone_pipeline, tmp_path):
    from magec.studio.session import Studio

    s = Studio(tone_pipeline, upload_root=tmp_path)
    yield s
    s.close()


def _elem_ids(blocks) -> set[str]:
    return {b.elem_id for b in blocks.blocks.values() if getattr(b, "elem_id", None)}


def _api_names(blocks) -> list:
    return [f.api_name for f in blocks.fns.values()]


def test_the_editor_tab_builds_alone(gr, studio):
    from magec.studio.app import editor_tab

    with gr.Blocks() as page:
        state = gr.State({})
        tab = editor_tab(studio, state)
    assert {"upload", "astronaut-btn", "invert-btn", "cancel-btn", "progress", "pasted", "downloads"} <= _elem_ids(page)
    assert isinstance(tab.invert_btn, gr.Button) and isinstance(tab.upload, gr.File)
    assert list(tab.shown) == list(tab.captions) == ["original", "projection", "edited"]
    assert [s.elem_id for s in tab.sliders] == [s.elem_id for s in studio.sliders] and tab.sliders
    assert all(isinstance(s, gr.Slider) for s in tab.sliders)
    names = _api_names(page)
    assert {"astronaut", "invert"} <= set(names)
    assert tab.method.value == "magec+pti"  # the method that gives the person back
    assert "face-choice" in _elem_ids(page)
    assert not [n for n in names if n and n.startswith("render")]  # the sliders draw through their own route


def test_the_compare_tab_builds_alone(gr, studio):
    from magec.studio.app import compare_tab

    with gr.Blocks() as page:
        tab = compare_tab(studio, gr.State({}))
    assert list(tab.images) == list(tab.captions) == list(PAPER_METHODS)
    assert {f"compare-{m}" for m in PAPER_METHODS} | {"compare-btn", "compare-cancel"} <= _elem_ids(page)
    assert tab.edit.choices and tab.edit.value == studio.sliders[0].label
    assert len(page.fns) == 4  # compare, cancel, and a redraw for each of the edit and its amount


def test_the_study_tab_builds_alone_and_says_why_it_cannot_start(gr, tmp_path):
    from magec.studio.app import study_tab

    with gr.Blocks() as page:
        tab = study_tab(None, gr.State({}))
    assert {"judge", "judge-btn", "study-left", "study-right", "left-btn", "right-btn"} <= _elem_ids(page)
    assert "--study-db" in tab.note.value
    with gr.Blocks():
        empty = study_tab(tmp_path / "study.db", gr.State({}))
    assert "holds no pool" in empty.note.value


def test_the_page_is_its_three_tabs(gr, studio, tmp_path):
    from magec.studio.app import build_app, compare_tab, editor_tab, study_tab

    page = build_app(studio, None)
    with gr.Blocks() as parts:
        state = gr.State({})
        editor_tab(studio, state)
        compare_tab(studio, state)
        study_tab(None, state)
    # ... and two page handlers more: the method's time estimate on load, and closing the browser tab stops that
    # viewer's inversions
    closing = [f for f in page.fns.values() if any(event == "unload" for _, event in f.targets)]
    loading = [f for f in page.fns.values() if any(event == "load" for _, event in f.targets)]
    assert len(closing) == 1 and closing[0].fn.__name__ == "on_close"
    assert len(loading) == 1 and loading[0].fn.__name__ == "on_method"
    extra = [f.api_name for f in page.fns.values() if f in (*closing, *loading)]
    assert _elem_ids(page) == _elem_ids(parts) and _api_names(page) == _api_names(parts) + extra
    release = threading.Event()
    try:
        studio.queue.submit("someone else", lambda job: release.wait(30))
        waiting = studio.queue.submit("viewer-1", lambda job: "ran")
        closing[0].fn(SimpleNamespace(session_hash="viewer-1"))  # what Gradio calls when viewer-1's tab closes
        assert waiting.wait(2) and waiting.state == CANCELLED and waiting.result is None
    finally:
        release.set()


def test_a_stopped_tuning_offers_finish_or_discard_and_discard_redraws_the_untuned_latent(gr, studio):
    import torch

    from magec.studio.app import editor_tab
    from magec.studio.session import FramedPhoto, Projection
    from magec.studio.widgets import tuning_stopped_text

    with gr.Blocks() as page:
        state = gr.State({})
        tab = editor_tab(studio, state)
    assert {"tuning-stopped", "finish-tuning-btn", "discard-tuning-btn"} <= _elem_ids(page)
    assert tab.tuning_row.visible is False  # shown only when a tuning was stopped
    gen = studio.pipeline.generator
    latent = gen.sample_latents(1, 4)
    framed = FramedPhoto(studio.example("generated").image)
    source = gen.synthesize(latent)
    stopped = Projection("magec+pti", latent, "z", None, source, 30, 1.0, False, framed=framed, tuning_steps=3,
                         tuning_stopped=True)  # fmt: skip
    text = tuning_stopped_text(studio, stopped)
    assert "stopped after 3 of" in text and "Finish the tuning" in text and "untuned latent" in text

    handlers = {f.fn.__name__: f.fn for f in page.fns.values() if f.fn is not None}
    out = handlers["on_discard"]({"projection": stopped}, *[0.0] * len(studio.sliders))
    kept = out[state]["projection"]
    assert kept.method == "magec" and not kept.tuning_stopped and torch.equal(kept.latent, latent)
    assert out[tab.tuning_row]["visible"] is False and "discarded" in out[tab.progress]
    assert tab.shown["edited"] in out and tab.captions["projection"] in out
    # Discarding what was not stopped says so in one line.
    again = handlers["on_discard"]({"projection": kept}, *[0.0] * len(studio.sliders))
    assert "nothing to discard" in again[tab.status]
