"""Paste an edited face back into the user's photo: the inverse of the framing, blended with a feathered mask.

Framing a photo for a generator (``--align`` or ``--face-crop``) maps the output square onto an oriented
square of the photo, recorded as a ``FaceFrame`` (``magec.faces.frame``). Pasting back samples the
generator's square at every photo pixel the square covers (bilinear, through the inverse map) and blends it
in under a mask: the convex hull of the face's 68 landmarks, shrunk a little and feathered so the seam falls
on skin, not on the background, times a ramp that falls to 0 inside the generated square's edges (the mask
never reaches past the square, so no straight seam). Pixels outside the mask are the photo's own bytes, untouched.

Two modes (``paste_edit``):

- ``sharp`` (the default): the *edit* is applied to the photo, not the generator's face over it: photo +
  mask x upsampled(G(edited) - G(projection)). An amount of 0 gives back the photo itself (the difference is
  0), and an edit changes only what it changes, at the photo's own sharpness.
- ``composite``: the generator's edited face itself, blended over the photo (``paste_back``): what the
  generator draws, at its resolution (a 64-pixel face stretched over the photo's face is soft).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.ndimage
from PIL import Image, ImageDraw

from magec.errors import MagecError
from magec.faces.frame import FaceFrame

if TYPE_CHECKING:
    from magec.faces.detection import Face


#: Paste modes of ``paste_edit`` (and ``magec edit --paste-mode``); the first is the default.
PASTE_MODES = ("sharp", "composite")
#: Width of the ramp inside the generated square's edges, a fraction of its side: the blend weight is 0 on the
#: square's edge and reaches the mask's own value this far inside it.
SQUARE_FEATHER = 0.08


def square_weight(s: np.ndarray, t: np.ndarray, feather: float | None = None) -> np.ndarray:
    """The blend weight of square coordinates (s, t): 0 outside the square and on its edges, rising smoothly
    (smoothstep) to 1 at ``feather`` of the side inside them."""
    edge = np.minimum(np.minimum(s, 1.0 - s), np.minimum(t, 1.0 - t))
    x = np.clip(edge / (SQUARE_FEATHER if feather is None else feather), 0.0, 1.0)
    return (x * x * (3.0 - 2.0 * x)).astype(np.float32)


def face_mask(size: tuple[int, int], landmarks: np.ndarray, shrink: float = 0.04, feather: float = 0.06) -> np.ndarray:
    """A float mask in [0, 1] of ``size`` (width, height): the landmarks' convex hull, eroded by ``shrink`` and
    blurred by ``feather`` (both fractions of the face's size), zero outside the hull."""
    from scipy.spatial import ConvexHull

    points = np.asarray(landmarks, dtype=np.float64)
    hull = points[ConvexHull(points).vertices]
    face = float(np.ptp(points, axis=0).max())
    canvas = Image.new("L", size, 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in hull], fill=255)
    inside = np.asarray(canvas) > 0
    erode = max(int(round(shrink * face)), 0)
    core = scipy.ndimage.binary_erosion(inside, iterations=erode) if erode else inside
    mask = scipy.ndimage.gaussian_filter(core.astype(np.float32), sigma=max(feather * face / 2.0, 0.5))
    mask[~inside] = 0.0  # never outside the hull: the rest of the photo keeps its bytes
    return np.clip(mask, 0.0, 1.0)


def _check_photo(photo: Image.Image, frame: FaceFrame) -> Image.Image:
    photo = photo.convert("RGB")
    if tuple(photo.size) != tuple(frame.photo_size):
        raise MagecError(
            f"the photo is {photo.width}x{photo.height}, but the face was framed in a "
            f"{frame.photo_size[0]}x{frame.photo_size[1]} photo: paste back into the same photo"
        )
    return photo


def _blend(
    photo: Image.Image, square: np.ndarray, frame: FaceFrame, landmarks: np.ndarray, mask: np.ndarray | None, add: bool
) -> Image.Image:
    """``square`` (H, W, 3 float: the generator's square or a difference of two) warped into the photo and
    blended under the mask times ``square_weight``: added to the photo (``add``) or drawn over it."""
    width, height = photo.size
    if mask is None:
        mask = face_mask((width, height), landmarks)
    elif mask.shape != (height, width):
        raise ValueError(f"mask of shape {mask.shape} for a {width}x{height} photo")
    ys, xs = np.nonzero(mask > 0)
    if len(xs) == 0:
        return photo.copy()
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    # Inverse map of the framing: photo pixel centre -> (s, t) in the square -> square pixel.
    basis = np.array([frame.u, frame.v], dtype=np.float64).T  # columns u, v
    inverse = np.linalg.inv(basis)
    gy, gx = np.mgrid[top:bottom, left:right].astype(np.float64)
    rel = np.stack([gx + 0.5 - frame.origin[0], gy + 0.5 - frame.origin[1]])
    s, t = np.tensordot(inverse, rel, axes=1)
    m = mask[top:bottom, left:right] * square_weight(s, t)
    changed = m > 0
    out = np.array(photo)
    if not changed.any():
        return Image.fromarray(out, mode="RGB")
    n = square.shape[0]
    coords = [t[changed] * n - 0.5, s[changed] * n - 0.5]  # only where the weight is not 0
    warped = np.stack(
        [scipy.ndimage.map_coordinates(square[..., c], coords, order=1, mode="nearest") for c in range(3)], axis=-1
    )
    region_u8 = out[top:bottom, left:right]
    pixels = region_u8[changed].astype(np.float32)
    weight = m[changed][:, None]
    blended = pixels + weight * warped if add else pixels * (1.0 - weight) + warped * weight
    region_u8[changed] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return Image.fromarray(out, mode="RGB")


def _square_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def paste_back(
    photo: Image.Image, crop: Image.Image, frame: FaceFrame, landmarks: np.ndarray, mask: np.ndarray | None = None
) -> Image.Image:
    """``photo`` with ``crop`` (the edited square, any size) warped back into the framed square and blended
    under the feathered landmark mask (the ``composite`` mode); every pixel where the mask is 0 is the
    photo's, bit for bit.

    ``mask``: ``face_mask(photo.size, landmarks)`` computed once by a caller that pastes many edits into one
    photo (the studio, at every slider release); None computes it here."""
    photo = _check_photo(photo, frame)
    return _blend(photo, _square_array(crop), frame, landmarks, mask, add=False)


def paste_edit(
    photo: Image.Image,
    edited: Image.Image,
    projection: Image.Image,
    frame: FaceFrame,
    landmarks: np.ndarray,
    mask: np.ndarray | None = None,
    mode: str = "sharp",
) -> Image.Image:
    """``photo`` with one edit pasted back: ``edited`` is the generator's square of the edited code,
    ``projection`` its square of the unedited code (same size, same generator).

    ``sharp``: photo + mask x upsampled(edited - projection): the edit applied to the photo at its own
    sharpness (``projection`` itself gives back the photo); ``composite``: ``paste_back(photo, edited, ...)``.
    Pixels where the mask is 0 keep the photo's bytes in both modes."""
    if mode not in PASTE_MODES:
        raise ValueError(f"unknown paste mode {mode!r}; expected one of {', '.join(PASTE_MODES)}")
    if mode == "composite":
        return paste_back(photo, edited, frame, landmarks, mask)
    if edited.size != projection.size:
        raise ValueError(f"edited square {edited.size} and projection {projection.size} differ in size")
    photo = _check_photo(photo, frame)
    delta = _square_array(edited) - _square_array(projection)
    return _blend(photo, delta, frame, landmarks, mask, add=True)


def face_landmarks_for(photo: Image.Image, frame: FaceFrame, scale: float = 1.0) -> np.ndarray:
    """The 68 landmarks (in ``photo``'s pixels times ``scale``) of the face nearest the framed square's centre."""
    return located_face_landmarks(photo, frame, scale)[0]


def located_face_landmarks(
    photo: Image.Image, frame: FaceFrame, scale: float = 1.0, faces: list[Face] | None = None
) -> tuple[np.ndarray, int]:
    """``face_landmarks_for``, and how many faces the photo holds (so a caller can say it took one of several).

    ``faces``: the faces already found in ``photo`` (``LandmarkDetector().detect``, e.g. when framing it), so one
    detection serves both; None detects here."""
    from magec.faces.detection import NO_FACE, LandmarkDetector

    faces = faces if faces is not None else LandmarkDetector().detect(photo)
    if not faces:
        raise MagecError(NO_FACE)
    centre = frame.square_corners().mean(0) - 0.5  # landmarks count pixel centres at integers
    nearest = min(faces, key=lambda f: float(np.hypot(*(f.landmarks.mean(0) - centre))))
    return (nearest.landmarks + 0.5) * scale - 0.5, len(faces)


def paste_into_photo(
    photo: str | Path,
    crops: list[Image.Image],
    frame: FaceFrame,
    max_pixels: int,
    projection: Image.Image | None = None,
    mode: str = "sharp",
) -> list[Image.Image]:
    """Each of ``crops`` pasted back into the photo file at ``photo`` (found and decoded once) with
    ``paste_edit`` (``projection``: the unedited code's square, which the ``sharp`` mode needs)."""
    from magec.errors import file_error
    from magec.faces.detection import DETECTION_SIDE
    from magec.io.images import read_image

    if mode == "sharp" and projection is None:
        raise ValueError("the sharp paste needs the projection's square")
    preview = read_image(photo, max_pixels, reduce_to=DETECTION_SIDE)
    full = read_image(photo, max_pixels)
    if tuple(full.size) != tuple(frame.photo_size):
        raise file_error(
            photo,
            f"is {full.width}x{full.height}, but the face was framed in a "
            f"{frame.photo_size[0]}x{frame.photo_size[1]} photo: paste back into the photo that was inverted",
        )
    try:
        landmarks = face_landmarks_for(
            preview, frame.scaled(preview.width / full.width, preview.size), full.width / preview.width
        )
    except MagecError as exc:
        raise file_error(photo, str(exc)) from None
    mask = face_mask(full.size, landmarks)
    base = projection if projection is not None else crops[0]
    return [paste_edit(full, crop, base, frame, landmarks, mask, mode) for crop in crops]
