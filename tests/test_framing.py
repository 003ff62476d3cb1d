"""Framing real photos: the studio's fast framing (dlib's models read once, in the background; one detection per
upload) frames a photo file exactly as the separate steps did, for both framings, and a large JPEG decoded reduced
gets its frame and landmarks in the whole photo's pixels."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from magec.faces.alignment import align_photo
from magec.faces.crop import frame_face_crop
from magec.faces.detection import SharedDetector
from magec.faces.framing import ALIGN, FACE_CROP, read_framed_photo
from magec.faces.paste import located_face_landmarks

dlib = pytest.importorskip("dlib")


def _astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def _hopper() -> Image.Image:
    """Grace Hopper's portrait, shipped as sample data inside matplotlib (found without importing it)."""
    spec = importlib.util.find_spec("matplotlib")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    return Image.open(path).convert("RGB")


@pytest.fixture(scope="module")
def detector() -> SharedDetector:
    shared = SharedDetector()  # what the studio keeps
    shared.preload()
    return shared


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """Three real portraits as files: the astronaut (512 px), Grace Hopper (512 x 600), the astronaut at 1100 px."""
    folder = tmp_path_factory.mktemp("photos")
    images = {
        "astronaut.png": _astronaut(),
        "hopper.png": _hopper(),
        "astronaut-1100.png": _astronaut().resize((1100, 1100), Image.Resampling.LANCZOS),
    }
    for name, image in images.items():
        image.save(folder / name)
    return {name: folder / name for name in images}


def _close(a: object, b: object, tol: float = 1e-6) -> bool:
    return bool(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max() <= tol)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["astronaut.png", "hopper.png", "astronaut-1100.png"])
def test_the_studios_framing_is_the_separate_steps_framing(detector, photos, name):
    """face-crop: the square, its frame and the paste-back landmarks are those of the detector and chip predictor
    read afresh (the studio once read the 5-point model at every upload); align: those of ``align_photo``."""
    path = photos[name]
    photo = Image.open(path).convert("RGB")
    fast = read_framed_photo(path, 64, FACE_CROP, detector=detector)
    crop, frame = frame_face_crop(photo, 64)  # its own detector and 5-point model
    landmarks, count = located_face_landmarks(photo, frame)
    assert fast.frame.photo_size == frame.photo_size and _close(fast.frame.square_corners(), frame.square_corners())
    assert np.array_equal(np.asarray(fast.image), np.asarray(crop))
    assert _close(fast.landmarks, landmarks) and len(fast.faces or ()) == count

    aligned_fast = read_framed_photo(path, 256, ALIGN, detector=detector)
    aligned = align_photo(path, 256)
    assert aligned_fast.frame == aligned.frame and _close(aligned_fast.landmarks, aligned.landmarks)
    assert np.array_equal(np.asarray(aligned_fast.image), np.asarray(aligned.image))


@pytest.mark.slow
def test_a_large_jpeg_is_framed_in_the_whole_photos_pixels(detector, photos, tmp_path):
    """A large JPEG is decoded reduced to find the face; its frame and landmarks are given in the whole photo."""
    path = tmp_path / "big.jpg"
    _astronaut().resize((4608, 4608), Image.Resampling.LANCZOS).save(path, quality=95)
    framed = read_framed_photo(path, 64, FACE_CROP, detector=detector)
    assert framed.full_size == (4608, 4608) and max(framed.photo.size) < 4608 and framed.scale > 1
    assert framed.frame.photo_size == (4608, 4608)
    small = read_framed_photo(photos["astronaut.png"], 64, FACE_CROP, detector=detector)
    # The same face at 9x the size: the frame scales with the photo.
    assert np.allclose(np.asarray(framed.frame.origin) / 9, small.frame.origin, atol=2.0)
    assert np.allclose(framed.landmarks / 9, small.landmarks, atol=2.0)
    # Without a detector or landmarks (a folder run: no 68-point model to read), the same square.
    light = read_framed_photo(path, 64, FACE_CROP, landmarks=False)
    assert light.faces is None and _close(light.frame.square_corners(), framed.frame.square_corners())


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_photo_turned_by_its_exif_is_framed_in_its_upright_pixels(detector, tmp_path, suffix):
    """A photo decoded whole takes its size from the decode (no second look at the file): upright, as the header's
    EXIF orientation says, for a PNG (whose EXIF may follow the pixels) as for a JPEG."""
    from magec.io.images import image_size

    upright = _hopper()  # 512 wide, 600 tall
    path = tmp_path / f"turned{suffix}"
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: stored turned the other way
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes())
    framed = read_framed_photo(path, 64, FACE_CROP, detector=detector)
    straight = read_framed_photo(_saved(upright, tmp_path / f"straight{suffix}"), 64, FACE_CROP, detector=detector)
    assert framed.full_size == image_size(path) == upright.size == framed.frame.photo_size and framed.scale == 1
    # The same face in the same place (within a few pixels: a JPEG's blocks fall elsewhere on the turned pixels).
    assert _close(framed.frame.square_corners(), straight.frame.square_corners(), tol=6.0)


def _saved(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path
