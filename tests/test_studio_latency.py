"""What a slider change costs in the studio (no browser): the edit is drawn once, the image is sent alone and small,
and the downloads are what they were (``tests/test_studio_browser.py`` times it in the page)."""

from __future__ import annotations

import base64
import gc
import io
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from magec.io.images import tensor_to_pil
from magec.render import render_latent


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def _projection(studio, framed, seed: int = 4):
    from magec.studio.session import Projection

    gen = studio.pipeline.generator
    latent = gen.sample_latents(1, seed)
    return Projection("magec", latent, "z", None, gen.synthesize(latent), 1, 0.1, False, framed=framed)


def _handlers(gr, studio):
    from magec.studio.app import editor_tab

    with gr.Blocks() as page:
        tab = editor_tab(studio, gr.State({}))
    return tab, {f.fn.__name__: f.fn for f in page.fns.values() if f.fn is not None}


@pytest.mark.slow
def test_a_slider_change_draws_the_edit_once_for_the_image_its_caption_and_the_photo(
    gr, studio, astronaut, monkeypatch
):
    from magec.studio import session
    from magec.studio.edit_route import edited_payload

    tab, handlers = _handlers(gr, studio)
    projection = _projection(studio, studio.frame(astronaut, "astronaut"))
    drawn, described = [], []
    real_render, real_captions = session.render_latent, studio.captions
    monkeypatch.setattr(session, "render_latent", lambda *a: drawn.append(dict(a[-1])) or real_render(*a))
    monkeypatch.setattr(studio, "captions", lambda images: described.append(len(images)) or real_captions(images))
    spec = next(s for s in studio.sliders if s.editor == "interfacegan")
    values = [spec.maximum if s is spec else 0.0 for s in studio.sliders]
    st = {"projection": projection}

    payload = edited_payload(studio, projection, values, "png")  # what the slider's route replies
    image = Image.open(io.BytesIO(base64.b64decode(payload["image"].split(",", 1)[1])))
    caption = payload["caption"]
    assert drawn == [{s.key: v for s, v in zip(studio.sliders, values)}] and described == [1]
    edit = real_render(studio.pipeline, projection.latent, "z", None, {spec.key: spec.maximum})
    assert caption == real_captions(edit)[0]
    # The generator's own pixels, lossless: the page enlarges them (square pixels) instead of the server.
    assert image.size == (studio.resolution,) * 2
    assert np.array_equal(np.asarray(image), np.asarray(tensor_to_pil(edit[0])))

    pasted = handlers["on_pasted"](st, *values)
    assert drawn[1:] == [{}] and described == [1]  # the edit reused; the unedited image drawn once
    assert pasted.size == astronaut.size  # the astronaut (512 px) is below the page's size for the photo

    values[studio.sliders.index(spec)] = spec.minimum  # the next change: one more draw in all
    edited_payload(studio, projection, values, "png")
    handlers["on_pasted"](st, *values)
    assert len(drawn) == 3


@pytest.mark.slow
def test_the_page_gets_small_lossless_images_and_the_downloads_stay_whole(gr, studio, astronaut):
    from magec.studio.app import PIXELS_CLASS, generator_images
    from magec.studio.photos import display

    tab, _ = _handlers(gr, studio)
    assert generator_images(studio)["format"] == "png"  # 64 px: lossless, and smaller to encode than WebP at 256
    for image in (*tab.shown.values(), tab.framed):
        assert image.format == "png" and PIXELS_CLASS in image.elem_classes
    projection = _projection(studio, studio.frame(astronaut, "astronaut"))
    spec = studio.sliders[0]
    values = {s.key: (s.maximum if s is spec else 0.0) for s in studio.sliders}
    shown = display(studio.render(projection, values))
    sent = io.BytesIO()
    shown.save(sent, "png")
    assert shown.width * shown.height * 16 == 256 * 256  # a 16th of what was sent before (enlarged 4x on the server)
    assert np.array_equal(np.asarray(Image.open(sent)), np.asarray(shown))

    # The downloads are drawn as before (the renders the page reused are the same pixels), whole and as PNG.
    files = {p.name: p for p in studio.downloads(projection, values)}
    edited = Image.open(files["studio-magec-edited.png"])
    assert edited.format == "PNG" and edited.size == (studio.resolution,) * 2
    fresh = render_latent(studio.pipeline, projection.latent, "z", None, values)
    assert np.array_equal(np.asarray(edited), np.asarray(tensor_to_pil(fresh[0])))
    pasted = Image.open(files["studio-magec-pasted.png"])
    assert pasted.format == "PNG" and pasted.size == astronaut.size

    # A large generator's image is reduced for the page (the downloads keep it whole).
    large = display(torch.zeros(3, 1024, 1024))
    assert large.size == (512, 512)


def test_the_studios_renders_keep_no_projection_alive_and_refuse_a_released_one(studio):
    from magec.errors import MagecError

    first = _projection(studio, None, seed=4)
    image = studio.render(first, {})
    assert studio.render(first, {}) is image  # drawn once
    gone = weakref.ref(first)
    del first
    gc.collect()
    assert gone() is None
    second = _projection(studio, None, seed=5)  # may reuse the first's id: its own image all the same
    assert not torch.equal(studio.render(second, {}), image)
    second.release()
    with pytest.raises(MagecError, match="session has ended"):
        studio.render(second, {})


@pytest.mark.slow
def test_a_large_photo_is_pasted_for_the_page_from_its_reduced_copy_as_if_reduced_whole(studio, astronaut):
    from magec.studio.widgets import PASTED_DISPLAY_SIDE, pasted_photo

    photo = astronaut.resize((1700, 1700), Image.Resampling.LANCZOS)  # reduced by 3 for the page
    projection = _projection(studio, studio.frame(photo, "large"))
    spec = studio.sliders[0]
    values = [spec.maximum if s is spec else 0.0 for s in studio.sliders]
    whole = studio.pasted(projection, studio.slider_values(values))
    assert whole.size == photo.size  # the download's: the photo's own resolution
    shown = pasted_photo(studio, projection, values)
    assert max(shown.size) <= PASTED_DISPLAY_SIDE and shown.size == whole.reduce(3).size
    assert np.array_equal(np.asarray(shown), np.asarray(whole.reduce(3)))  # only the face's blocks were reduced
    assert not np.array_equal(np.asarray(shown), np.asarray(photo.reduce(3)))  # and the edit is in them
    assert np.array_equal(
        np.asarray(pasted_photo(studio, projection, [0.0] * len(values))), np.asarray(photo.reduce(3))
    )
