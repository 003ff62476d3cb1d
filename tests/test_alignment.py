"""FFHQ alignment: eyes land on the FFHQ template, bad input is refused, outputs are all-or-nothing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from magec.cli.main import main
from magec.errors import MagecError
from magec.faces.alignment import FFHQ_LEFT_EYE, FFHQ_RIGHT_EYE, align_face, ffhq_quad
from magec.faces.detection import LandmarkDetector

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def detector():
    return LandmarkDetector()


@pytest.fixture(scope="module")
def astronaut():
    return Image.fromarray(skimage_data.astronaut())


@pytest.mark.parametrize("size", [256, 512])
def test_astronaut_eyes_land_on_the_ffhq_template(detector, astronaut, size):
    aligned = align_face(astronaut, size, detector=detector)
    assert aligned.size == (size, size) and aligned.mode == "RGB"
    faces = detector.detect(aligned)
    assert faces, "the aligned face must still be detectable"
    left, right = faces[0].eye_centres
    for found, template in ((left, FFHQ_LEFT_EYE), (right, FFHQ_RIGHT_EYE)):
        error = np.hypot(*(found - np.array(template) * size)) / size
        assert error < 0.02, (found, np.array(template) * size)


def test_quad_follows_a_rotated_face(detector, astronaut):
    """Rotating the photo rotates the crop square with it (the alignment undoes in-plane rotation)."""
    upright = ffhq_quad(detector.detect(astronaut)[0])
    tilted_img = astronaut.rotate(20, resample=Image.Resampling.BICUBIC, expand=False)
    tilted = ffhq_quad(detector.detect(tilted_img)[0])
    angle = lambda q: np.degrees(np.arctan2(*(q[3] - q[0])[::-1]))  # top edge direction
    # PIL rotates counter-clockwise, so the face's top edge turns by -20 degrees in image coordinates.
    assert abs((angle(tilted) - angle(upright)) + 20) < 4


def test_no_face_is_a_clear_error(detector):
    blank = Image.new("RGB", (200, 200), (128, 128, 128))
    with pytest.raises(MagecError, match="no face found"):
        align_face(blank, 64, detector=detector)


def test_face_index_out_of_range(detector, astronaut):
    n = len(detector.detect(astronaut))
    with pytest.raises(MagecError, match=f"no face {n}: only {n} face"):
        align_face(astronaut, 64, face_index=n, detector=detector)


@pytest.mark.slow
def test_cli_align(tmp_path, capsys):
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    out = tmp_path / "out" / "aligned.png"
    assert main(["align", str(photo), "--out", str(out), "--size", "128"]) == 0
    with Image.open(out) as im:
        assert im.size == (128, 128)

    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 90), (20, 30, 40)).save(blank)
    nothing = tmp_path / "nothing.png"
    assert main(["align", str(blank), "--out", str(nothing)]) == 1
    assert f"{blank}: no face found" in capsys.readouterr().err
    assert not nothing.exists()
    assert list(tmp_path.glob(".nothing.png*")) == []

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["align", str(broken), "--out", str(nothing)]) == 1
    assert "broken.jpg" in capsys.readouterr().err
    assert not nothing.exists()
