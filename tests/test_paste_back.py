"""Paste-back: the edited face goes back into the user's photo at full resolution, through the inverse of the
framing; outside the face mask the photo keeps its bytes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from magec.faces.alignment import align_photo
from magec.faces.crop import frame_face_crop
from magec.faces.frame import FaceFrame
from magec.faces.paste import face_landmarks_for, face_mask, paste_back, paste_into_photo


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def _mask_and_diff(before: Image.Image, after: Image.Image) -> np.ndarray:
    return np.abs(np.asarray(after, dtype=np.int16) - np.asarray(before, dtype=np.int16)).max(-1)


@pytest.mark.slow
@pytest.mark.parametrize("framing", ["face-crop", "align"])
def test_pasting_the_unedited_crop_back_restores_the_photo(photo, framing):
    """The framing geometry is right: the crop itself, pasted back, lands on the face it was cut from."""
    original = Image.open(photo).convert("RGB")
    if framing == "align":
        aligned = align_photo(photo, 256)
        crop, frame = aligned.image, aligned.frame
    else:
        crop, frame = frame_face_crop(original, 256)
    landmarks = face_landmarks_for(original, frame)
    pasted = paste_back(original, crop, frame, landmarks)
    diff = _mask_and_diff(original, pasted)
    face = face_mask(original.size, landmarks) > 0.5
    assert face.sum() > 5000  # a real face region
    assert np.mean(diff[face]) < 6.0, np.mean(diff[face])  # the same face, to within resampling
    shifted = FaceFrame(
        (frame.origin[0] + 12, frame.origin[1]), frame.u, frame.v, frame.photo_size
    )  # a wrong geometry is seen: 12 px off gives a much larger difference
    assert np.mean(_mask_and_diff(original, paste_back(original, crop, shifted, landmarks))[face]) > 2 * np.mean(
        diff[face]
    )


@pytest.mark.slow
def test_outside_the_mask_the_photo_is_untouched_and_the_face_changes(photo):
    original = Image.open(photo).convert("RGB")
    crop, frame = frame_face_crop(original, 64)
    gray = Image.new("RGB", crop.size, (128, 128, 128))
    pasted = paste_back(original, gray, frame, face_landmarks_for(original, frame))
    diff = _mask_and_diff(original, pasted)
    x, y = np.nonzero(diff.T)
    hull = face_landmarks_for(original, frame)
    # Every changed pixel lies within the landmarks' bounding box; everything else is bit-identical.
    assert x.min() >= hull[:, 0].min() - 1 and x.max() <= hull[:, 0].max() + 1
    assert y.min() >= hull[:, 1].min() - 1 and y.max() <= hull[:, 1].max() + 1
    untouched = np.ones(diff.shape, bool)
    untouched[y.min() : y.max() + 1, x.min() : x.max() + 1] = False
    assert np.array_equal(np.asarray(pasted)[untouched], np.asarray(original)[untouched])
    assert np.mean(diff[diff > 0]) > 20  # the face really became the gray square


def test_paste_into_a_different_photo_is_refused(photo, tmp_path):
    from magec.errors import MagecError

    original = Image.open(photo).convert("RGB")
    _, frame = frame_face_crop(original, 64)
    other = tmp_path / "other.png"
    original.resize((256, 256)).save(other)
    with pytest.raises(MagecError, match="paste back into the photo that was inverted"):
        paste_into_photo(other, [original], frame, 10**8, projection=original)


def test_a_face_frame_round_trips_through_its_record():
    frame = FaceFrame((1.5, 2.0), (100.0, 3.0), (-3.0, 100.0), (640, 480))
    assert FaceFrame.from_dict(frame.to_dict()) == frame


@pytest.mark.slow
def test_cli_invert_with_pti_then_edit_pasted_back(photo, embedded_pack, tmp_path):
    """The whole job on a real photo: face-crop, magec+pti, an edit pasted back at the photo's resolution."""
    from magec.cli.main import main

    pack = embedded_pack.save(tmp_path / "pack")
    common = ["--pack", str(pack), "--device", "cpu"]
    assert (
        main(
            [
                "invert",
                str(photo),
                "--face-crop",
                "--method",
                "magec+pti",
                "--steps-scale",
                "0.1",
                "--out",
                str(tmp_path / "inv"),
                *common,
            ]
        )
        == 0
    )
    latent = tmp_path / "inv" / "astronaut.latent.safetensors"
    assert (tmp_path / "inv" / "astronaut.pti.safetensors").is_file()
    edits = tmp_path / "edits"
    argv = ["edit", str(latent), "--editor", "interfacegan", "--operation", "male", "--amounts=3"]
    assert main([*argv, "--out", str(edits), "--paste-back", str(photo), *common]) == 0
    original = Image.open(photo).convert("RGB")
    with Image.open(edits / "interfacegan_male_+3.00.pasted.png") as pasted:
        assert pasted.size == original.size
        diff = _mask_and_diff(original, pasted.convert("RGB"))
    assert 0 < (diff > 0).mean() < 0.2  # the face, and only the face, changed
    with Image.open(edits / "projection.pasted.png") as pasted:  # sharp (the default): no edit, the photo itself
        assert np.array_equal(np.asarray(pasted.convert("RGB")), np.asarray(original))
    composite = tmp_path / "composite"
    assert main([*argv, "--out", str(composite), "--paste-back", str(photo), "--paste-mode", "composite", *common]) == 0
    with Image.open(composite / "projection.pasted.png") as pasted:  # the generator's face drawn over the photo
        assert 0 < (_mask_and_diff(original, pasted.convert("RGB")) > 0).mean() < 0.2
    assert (
        main([*argv, "--paste-back", str(tmp_path / "inv" / "astronaut.png"), "--out", str(tmp_path / "e2"), *common])
        == 1
    )
