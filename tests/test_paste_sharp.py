"""The sharp paste-back (``paste_edit``, mode ``sharp``): the edit is applied to the photo, so an amount of 0 is
the photo itself, the face keeps the photo's sharpness, and no straight seam runs along the generated square."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image
from skimage import data

from magec.faces.crop import frame_face_crop
from magec.faces.paste import PASTE_MODES, face_landmarks_for, face_mask, paste_edit


@pytest.fixture(scope="module")
def astronaut():
    photo = Image.fromarray(data.astronaut())
    square, framing = frame_face_crop(photo, 64)
    landmarks = face_landmarks_for(photo, framing)
    return photo, square, framing, landmarks, face_mask(photo.size, landmarks)


def _gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float64)


def _sharpness(image: Image.Image, region: np.ndarray) -> float:
    """Variance of the Laplacian over ``region`` (a boolean mask): the usual focus measure."""
    return float(scipy.ndimage.laplace(_gray(image))[region].var())


def _edited(square: Image.Image, brighter: float = 40.0) -> Image.Image:
    """A smooth edit of the generator's square: brighter in a soft disc around the face's centre."""
    n = square.width
    yy, xx = np.mgrid[0:n, 0:n]
    disc = np.exp(-(((xx - 0.5 * n) ** 2 + (yy - 0.6 * n) ** 2) / (2 * (0.2 * n) ** 2)))
    pixels = np.asarray(square, dtype=np.float64) + brighter * disc[..., None]
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _edge_points(framing, step: float = 1.0):
    """Points along the generated square's bottom edge (photo pixels) and the unit normal pointing out of it."""
    o, u, v = (np.asarray(x, dtype=np.float64) for x in (framing.origin, framing.u, framing.v))
    count = int(np.linalg.norm(u) / step)
    points = o + v + np.linspace(0.0, 1.0, count)[:, None] * u
    return points, v / np.linalg.norm(v)


def _across_edge(image: np.ndarray, framing, offset: float) -> np.ndarray:
    """|value 1 px outside - value ``offset`` px inside| of a gray image at each point of the square's bottom edge."""
    points, normal = _edge_points(framing)
    sample = lambda p: scipy.ndimage.map_coordinates(image, [p[:, 1] - 0.5, p[:, 0] - 0.5], order=1)
    return np.abs(sample(points + normal) - sample(points - offset * normal))


def test_modes_are_listed_and_the_cli_spells_them_alike():
    from magec.cli.cmd_edit import PASTE_MODES as CLI_MODES

    assert PASTE_MODES == CLI_MODES == ("sharp", "composite")


def test_amount_zero_gives_back_the_photo_itself(astronaut):
    photo, square, framing, landmarks, mask = astronaut
    pasted = paste_edit(photo, square, square, framing, landmarks, mask)
    assert np.array_equal(np.asarray(pasted), np.asarray(photo))  # delta 0: every byte, band included
    composite = paste_edit(photo, square, square, framing, landmarks, mask, mode="composite")
    assert not np.array_equal(np.asarray(composite), np.asarray(photo))  # the old mode redraws the face


def test_sharp_paste_keeps_the_photos_sharpness_and_changes_the_face(astronaut):
    photo, square, framing, landmarks, mask = astronaut
    edited = _edited(square)
    face = mask > 0.5
    sharp = paste_edit(photo, edited, square, framing, landmarks, mask)
    composite = paste_edit(photo, edited, square, framing, landmarks, mask, mode="composite")
    reference = _sharpness(photo, face)
    assert _sharpness(sharp, face) >= 0.8 * reference, (_sharpness(sharp, face), reference)
    assert _sharpness(composite, face) < 0.8 * reference  # the 64-pixel face over the photo is soft
    change = _gray(sharp) - _gray(photo)
    assert change[face].mean() > 10  # the edit did happen: the face became brighter


def test_outside_the_mask_and_the_square_the_photo_keeps_its_bytes(astronaut):
    photo, square, framing, landmarks, mask = astronaut
    for mode in PASTE_MODES:
        pasted = np.asarray(paste_edit(photo, _edited(square, 80.0), square, framing, landmarks, mask, mode))
        changed = np.any(pasted != np.asarray(photo), axis=-1)
        assert changed.any()
        assert not changed[mask == 0].any()  # outside the landmark mask: the photo's bytes
        # ... and never past the generated square: every changed pixel centre lies inside it
        ys, xs = np.nonzero(changed)
        basis = np.array([framing.u, framing.v]).T
        s, t = np.linalg.solve(basis, np.stack([xs + 0.5 - framing.origin[0], ys + 0.5 - framing.origin[1]]))
        assert s.min() > 0 and s.max() < 1 and t.min() > 0 and t.max() < 1, (s.min(), s.max(), t.min(), t.max())


@pytest.mark.parametrize("mode", PASTE_MODES)
def test_no_straight_seam_along_the_squares_bottom_edge(astronaut, mode):
    """The landmark mask reaches below the generated square (the chin); the blend fades out inside the square,
    so what the paste changes does not jump across the square's bottom edge: the largest jump of the change
    there stays below the photo's own typical (mean) jump across that edge."""
    photo, square, framing, landmarks, mask = astronaut
    points, _ = _edge_points(framing)
    ix = np.clip(np.rint(points).astype(int), 0, [photo.width - 1, photo.height - 1])
    under_face = mask[ix[:, 1], ix[:, 0]] > 0.05
    assert under_face.sum() > 20  # the face's mask does cross the square's bottom edge: the case of the seam
    gray = Image.new("RGB", square.size, (128, 128, 128))  # the strongest change: the face becomes flat gray
    pasted = paste_edit(photo, gray, square, framing, landmarks, mask, mode)
    change = _gray(pasted) - _gray(photo)
    seam = _across_edge(change, framing, 1.0)[under_face].max()
    own = _across_edge(_gray(photo), framing, 1.0)[under_face].mean()
    assert seam < own, (seam, own)
