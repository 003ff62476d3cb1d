"""The slider's own route (``POST /magec/render``): what the page shows, for its own session only, and one line for
anything else (no browser: Starlette's test client on the page's web app)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from magec.io.images import tensor_to_pil


@pytest.fixture()
def page(gr, studio):
    """The Editor tab's page with the route added, as ``serve`` adds it after launch."""
    from starlette.testclient import TestClient

    from magec.studio.app import editor_tab, generator_images
    from magec.studio.edit_route import add_render_route

    with gr.Blocks() as blocks:
        state = gr.State({})
        editor_tab(studio, state)
    add_render_route(blocks, studio, state, generator_images(studio)["format"])
    with TestClient(blocks.app) as client:
        yield blocks, state, client


def _projection(studio, seed: int = 4):
    from magec.studio.session import Projection

    gen = studio.pipeline.generator
    latent = gen.sample_latents(1, seed)
    return Projection("magec", latent, "z", None, gen.synthesize(latent), 1, 0.1, False)


def _post(client, body):
    return client.post("/magec/render", content=body if isinstance(body, bytes) else json.dumps(body))


def _image(reply) -> np.ndarray:
    uri = reply.json()["image"]
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_the_route_draws_the_sessions_own_projection_as_the_page_showed_it(page, studio):
    blocks, state, client = page
    mine, theirs = _projection(studio, 4), _projection(studio, 5)
    blocks.state_holder["mine"][state._id] = {"projection": mine}
    blocks.state_holder["theirs"][state._id] = {"projection": theirs}
    spec = studio.sliders[0]
    values = [spec.maximum if s is spec else 0.0 for s in studio.sliders]

    reply = _post(client, {"session": "mine", "values": values})
    assert reply.status_code == 200
    edit = studio.render(mine, studio.slider_values(values))
    assert np.array_equal(_image(reply), np.asarray(tensor_to_pil(edit[0])))  # the generator's pixels, lossless
    assert reply.json()["caption"] == studio.captions(edit)[0]
    assert "/" not in reply.text.replace(reply.json()["image"], "")  # no server path in the reply

    other = _post(client, {"session": "theirs", "values": values})  # each session its own projection
    assert not np.array_equal(_image(other), _image(reply))
    assert np.array_equal(
        _image(other), np.asarray(tensor_to_pil(studio.render(theirs, studio.slider_values(values))[0]))
    )


def test_a_session_without_a_projection_gets_nothing_and_an_unknown_one_is_refused(page, studio):
    blocks, state, client = page
    zeros = [0.0] * len(studio.sliders)
    blocks.state_holder["fresh"][state._id] = {}
    assert _post(client, {"session": "fresh", "values": zeros}).status_code == 204  # nothing to draw yet
    for session in ("nobody", "../../etc/passwd", "/etc/passwd"):
        reply = _post(client, {"session": session, "values": zeros})
        assert reply.status_code == 404 and "\n" not in reply.json()["error"]
        assert session not in blocks.state_holder  # a request never creates a session


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        ({"values": "ZEROS"}, "session id"),
        ({"session": 7, "values": "ZEROS"}, "session id"),
        ({"session": "s"}, "slider values"),
        ({"session": "s", "values": [0.0]}, "slider values"),
        ({"session": "s", "values": "ZEROS", "bad": ["x"]}, "bad slider value"),
        ({"session": "s", "values": "ZEROS", "bad": [True]}, "bad slider value"),
        (b'{"session": "s", "values": "ZEROS", "bad": [NaN]}', "bad slider value"),
        ({"session": "s", "values": "ZEROS", "bad": [1e9]}, "outside"),
        (b"{" + b" " * 5000 + b"}", "above 4096 bytes"),
    ],
)
def test_bad_requests_are_refused_in_one_line(page, studio, body, problem):
    blocks, state, client = page
    blocks.state_holder["s"][state._id] = {"projection": _projection(studio)}
    n = len(studio.sliders)
    if isinstance(body, dict):
        bad = body.pop("bad", None)
        if body.get("values") == "ZEROS":
            body["values"] = (bad or []) + [0.0] * (n - len(bad or []))
    elif b"ZEROS" in body:
        body = body.replace(b'"ZEROS", "bad": [NaN]', b"[NaN" + b", 0.0" * (n - 1) + b"]")
    reply = _post(client, body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert problem in error and "\n" not in error and "Traceback" not in error


def test_a_released_projection_is_refused_in_one_line(page, studio):
    blocks, state, client = page
    projection = _projection(studio)
    blocks.state_holder["gone"][state._id] = {"projection": projection}
    projection.release()  # the viewer closed the page (``Studio.end_session``)
    reply = _post(client, {"session": "gone", "values": [0.0] * len(studio.sliders)})
    assert reply.status_code == 400 and "session has ended" in reply.json()["error"]


def test_each_slider_runs_the_route_in_the_page_then_pastes_the_photo(gr, studio):
    from magec.studio.app import editor_tab
    from magec.studio.edit_route import RENDER_PATH, SLIDER_JS

    with gr.Blocks() as blocks:
        tab = editor_tab(studio, gr.State({}))
    slider_ids = {s._id for s in tab.sliders}
    on_change = [f for f in blocks.fns.values() if {t[0] for t in f.targets} & slider_ids]
    in_page = [f for f in on_change if f.fn is None]
    assert len(in_page) == len(tab.sliders) and all(f.js == SLIDER_JS for f in in_page)
    assert RENDER_PATH.lstrip("/") in SLIDER_JS and "__gradio_session_hash__" in SLIDER_JS
    assert not [f for f in on_change if f.fn is not None and f.fn.__name__ == "on_slider"]  # no second render
    assert sum(1 for f in on_change if f.fn is not None and f.fn.__name__ == "on_pasted") == len(tab.sliders)
