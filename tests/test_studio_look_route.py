"""The first look's own route (``POST /magec/first-look``): an upload framed on arrival answered with the images the
page then shows, for a session the server knows, without taking them from the page's request; one line for a bad
request (no browser: Starlette's test client on the page's web app)."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from magec.encoders.base import Encoder
from magec.studio.photos import display


class CountingEncoder(Encoder):
    """A small random conv net to the DCGAN's z that counts its calls."""

    spec, resolution, space = "counting-test-encoder", 32, "z"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.Flatten(), nn.Linear(8 * 8 * 8, 100))
        self.calls = 0

    def encode_resized(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(images)


@pytest.fixture()
def studio(tone_pipeline, tmp_path):
    from magec.studio.session import Studio

    root = tmp_path / "uploads"
    root.mkdir()
    s = Studio(replace(tone_pipeline, encoder=CountingEncoder()), steps_scale=0.05, upload_root=root)
    yield s
    s.close()


@pytest.fixture()
def page(gr, studio):
    """The Editor tab's page with the route added, as ``serve`` adds it after launch."""
    from starlette.testclient import TestClient

    from magec.studio.app import editor_tab, generator_images
    from magec.studio.look_route import add_first_look_route

    with gr.Blocks() as blocks:
        state = gr.State({})
        editor_tab(studio, state)
    add_first_look_route(blocks, studio, generator_images(studio)["format"])
    with TestClient(blocks.app) as client:
        yield blocks, state, client


def _post(client, body):
    return client.post("/magec/first-look", content=body if isinstance(body, bytes) else json.dumps(body))


def _pixels(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


@pytest.mark.slow
def test_an_upload_is_answered_with_its_first_look_and_the_page_still_gets_it(page, studio):
    from skimage import data

    pytest.importorskip("dlib")
    blocks, state, client = page
    blocks.state_holder["mine"][state._id] = {}
    upload = studio.upload_root / "me.png"
    Image.fromarray(data.astronaut()).save(upload)
    studio.prepare_upload(upload)  # as the upload route answers

    reply = _post(client, {"session": "mine", "file": str(upload)})
    assert reply.status_code == 200 and studio.pipeline.encoder.calls == 1
    assert str(studio.upload_root) not in reply.text  # no server path in the reply
    framed = studio.read_upload(upload, owner="mine")  # the page's own request: the same framing and look
    look = studio.instant_projection(framed, "mine")
    assert studio.pipeline.encoder.calls == 1  # encoded once, on arrival
    assert np.array_equal(_pixels(reply.json()["framed"]), np.asarray(display(framed.image)))
    assert np.array_equal(_pixels(reply.json()["projection"]), np.asarray(display(studio.projection_image(look))))


def test_anything_else_gets_nothing_or_one_line(page, studio, tmp_path):
    blocks, state, client = page
    blocks.state_holder["mine"][state._id] = {}
    elsewhere = tmp_path / "mine.png"
    Image.new("RGB", (64, 64)).save(elsewhere)
    never = studio.upload_root / "never.png"
    Image.new("RGB", (64, 64)).save(never)
    for file in (str(never), str(elsewhere), "../../etc/passwd", "/etc/passwd"):  # no first look made for any
        assert _post(client, {"session": "mine", "file": file}).status_code == 204
    assert studio.pipeline.encoder.calls == 0 and never.exists() and elsewhere.exists()
    for session in ("nobody", "../../etc/passwd"):
        reply = _post(client, {"session": session, "file": str(never)})
        assert reply.status_code == 404 and "\n" not in reply.json()["error"]
    for body in (b"not json", b"[1]", {"session": "mine"}, {"session": "mine", "file": 3}, b"x" * 5000,
                 {"session": "mine", "file": "a\x00b"}):  # fmt: skip
        reply = _post(client, body)
        assert reply.status_code == 400 and "\n" not in reply.json()["error"]
