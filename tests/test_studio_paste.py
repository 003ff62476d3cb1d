"""The studio gives the photo back: the edit pasted into the uploaded photo, and ``+pti`` rendered with its tuned
generator (``magec.studio.session``, no browser)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from magec.faces.paste import face_mask, paste_edit
from magec.inversion.config import PTI_SUFFIX
from magec.inversion.outputs import load_latent, tuned_generator_for
from magec.io.images import pil_to_tensor, tensor_to_pil
from magec.render import render_latent


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def _invert(studio, framed, methods):
    job = studio.submit("test", framed, methods)
    assert job.wait(120) and job.state == "done", job.error
    assert job.step == job.total  # every latent and tuning step advanced the progress
    return job.result


def test_an_upload_comes_back_as_the_photo_with_the_edit_pasted_in(studio, astronaut):
    upload = studio.upload_root / "astronaut.png"
    astronaut.save(upload)
    framed = studio.read_upload(upload)
    assert framed.image.size == (studio.resolution,) * 2 and framed.photo.size == astronaut.size
    assert np.array_equal(np.asarray(framed.photo), np.asarray(astronaut))  # kept at its own resolution
    projection = _invert(studio, framed, ("magec",))["magec"]

    spec = next(s for s in studio.sliders if s.editor == "interfacegan")
    rest = studio.pasted(projection, {})
    moved = studio.pasted(projection, {spec.key: spec.maximum})
    photo = np.asarray(astronaut)
    outside = face_mask(astronaut.size, framed.landmarks) == 0
    for pasted in (rest, moved):
        assert pasted.size == astronaut.size
        assert np.array_equal(np.asarray(pasted)[outside], photo[outside])  # bit for bit outside the face mask
    inside = ~outside
    assert inside.sum() > 1000
    assert np.array_equal(np.asarray(rest), photo)  # the sharp paste: no edit gives back the photo itself
    change = np.abs(np.asarray(moved, dtype=np.int16) - np.asarray(rest, dtype=np.int16))[inside].mean()
    assert change > 1.0, f"the slider barely changed the pasted face ({change:.2f} grey levels)"
    # The studio pastes within a region around the face (its mask computed once): what paste_edit gives on the
    # whole photo, up to rounding of the warp's coordinates.
    whole = paste_edit(astronaut, tensor_to_pil(studio.render(projection, {spec.key: spec.maximum})[0]),
                       tensor_to_pil(studio.render(projection, {})[0]), framed.frame, framed.landmarks)  # fmt: skip
    assert np.abs(np.asarray(whole, dtype=np.int16) - np.asarray(moved, dtype=np.int16)).max() <= 1

    files = {p.name: p for p in studio.downloads(projection, {spec.key: spec.maximum})}
    assert np.array_equal(np.asarray(Image.open(files["studio-magec-pasted.png"])), np.asarray(moved))
    # The latent records where the face sits, so `magec edit --paste-back` works on the downloaded latent too.
    saved = load_latent(files["studio-magec.latent.safetensors"])
    assert saved.metadata["photo"]["framing"] == "face-crop"
    assert tuple(saved.metadata["photo"]["photo_size"]) == astronaut.size

    # A generated face has no photo: nothing to paste into, and no pasted download.
    generated = _invert(studio, studio.example("generated"), ("magec",))["magec"]
    assert studio.pasted(generated, {}) is None
    assert not [p for p in studio.downloads(generated, {}) if p.name.endswith("-pasted.png")]


@pytest.mark.slow
def test_a_large_jpeg_is_kept_and_framed_at_its_full_resolution(studio, astronaut):
    """A JPEG above twice the detection side is framed on a reduced decode; the photo kept for pasting is full size."""
    big = astronaut.resize((4608, 4608), Image.Resampling.BILINEAR)
    upload = studio.upload_root / "big.jpg"
    big.save(upload, quality=90)
    framed = studio.read_upload(upload)
    assert framed.photo.size == (4608, 4608) and framed.frame.photo_size == (4608, 4608)
    small = studio.frame(astronaut)
    # The same face, found on the reduced decode and scaled up: the framing agrees with the small photo's x9.
    assert np.allclose(np.asarray(framed.frame.origin) / 9, small.frame.origin, atol=2.0)


@pytest.mark.slow
def test_magec_pti_in_the_studio_renders_with_its_tuned_generator(studio, astronaut):
    framed = studio.example("astronaut")
    results = _invert(studio, framed, ("magec", "magec+pti"))
    plain, tuned = results["magec"], results["magec+pti"]
    assert plain.tuned is None and tuned.tuned is not None
    assert plain.tuning_steps == 0 and tuned.tuning_steps == 7  # PTI 350 steps x 0.02
    source = pil_to_tensor(framed.image)

    def mse(projection) -> float:
        return float(((studio.projection_image(projection) - source) ** 2).mean())

    print(f"projection MSE: magec {mse(plain):.4f}, magec+pti {mse(tuned):.4f}")
    assert mse(tuned) < mse(plain), (mse(tuned), mse(plain))
    # The sliders draw with the tuned generator, not the pipeline's.
    base = render_latent(studio.pipeline, tuned.latent, tuned.space, tuned.noise, {})
    assert not torch.equal(studio.render(tuned, {}), base)
    assert studio.pasted(tuned, {}).size == astronaut.size

    files = {p.name: p for p in studio.downloads(tuned, {})}
    latent = files["studio-magec+pti.latent.safetensors"]
    assert f"studio-magec+pti{PTI_SUFFIX}" in files and "studio-magec+pti-pasted.png" in files
    again = tuned_generator_for(latent, studio.pipeline.generator)  # what `magec edit` renders with
    shown = render_latent(replace(studio.pipeline, generator=again), tuned.latent, tuned.space, tuned.noise, {})
    assert torch.equal(shown, studio.render(tuned, {}))


@pytest.mark.slow
def test_an_upload_costs_one_face_detection_and_frames_as_two_did(studio, astronaut, monkeypatch):
    """Framing and the paste-back landmarks share one dlib detection; the result is what two separate ones gave."""
    import dlib

    from magec.faces.framing import frame_face_located
    from magec.faces.paste import located_face_landmarks

    runs, make = [0], dlib.get_frontal_face_detector

    class Counted:  # every dlib detector run (``run`` for the 68-point path, a call for the chip path)
        def __init__(self) -> None:
            self.inner = make()

        def __call__(self, *args):
            runs[0] += 1
            return self.inner(*args)

        def run(self, *args):
            runs[0] += 1
            return self.inner.run(*args)

    monkeypatch.setattr(dlib, "get_frontal_face_detector", Counted)
    upload = studio.upload_root / "astronaut.png"
    astronaut.save(upload)
    framed = studio.read_upload(upload)
    assert runs[0] == 1
    studio.frame(astronaut, face=0)  # the next photo: the studio's detector is loaded once, and runs once
    assert runs[0] == 2

    # The same square and landmarks as the two detections the studio used to run.
    image, frame = frame_face_located(astronaut, studio.resolution, "face-crop")
    landmarks, faces = located_face_landmarks(astronaut, frame)
    assert framed.frame == frame and np.array_equal(np.asarray(framed.image), np.asarray(image))
    assert np.array_equal(framed.landmarks, landmarks) and framed.faces == faces
    found = studio._faces.detect(astronaut)
    aligned = frame_face_located(astronaut, 128, "align", faces=found)
    again = frame_face_located(astronaut, 128, "align")
    assert aligned[1] == again[1] and np.array_equal(np.asarray(aligned[0]), np.asarray(again[0]))
