"""Your photo, edited: what pasting a projection's edits back into the person's photo gives, measured.

``magec evaluate --face-crop/--align --paste-back`` pastes the projection (amount 0) and every random edit of
each face back into the photo the face came from, in each paste mode (``magec.faces.paste.paste_edit``), and
measures what the person would see: how sharp the face region is next to the photo's own (variance of the
Laplacian), how far the untouched projection moves the photo (MSE in the face region and outside the mask),
and whether dlib's own recognition network still calls the pasted edit the same person as the photo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.ndimage
from PIL import Image

from magec.faces.frame import FaceFrame
from magec.faces.paste import PASTE_MODES, face_mask, paste_edit

#: Share of the square's side added around it for dlib's identity crop (the face and some context).
IDENTITY_MARGIN = 0.3


@dataclass(frozen=True)
class PhotoFace:
    """One evaluated face in its photo: the photo as framing read it, where the generator's square sits in it
    (``FaceFrame``, photo pixels) and the face's 68 landmarks there."""

    photo: Image.Image
    frame: FaceFrame
    landmarks: np.ndarray

    def identity_box(self) -> tuple[int, int, int, int]:
        """The framed square's bounding box grown by ``IDENTITY_MARGIN`` on each side, clipped to the photo."""
        corners = self.frame.square_corners()
        (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
        pad = IDENTITY_MARGIN * (x1 - x0)
        w, h = self.photo.size
        return (int(max(x0 - pad, 0)), int(max(y0 - pad, 0)), int(min(x1 + pad, w)), int(min(y1 + pad, h)))


def laplacian_variance(image: Image.Image, region: np.ndarray) -> float:
    """Variance of the Laplacian of ``image``'s grey values over the boolean ``region``: a focus measure."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    return float(scipy.ndimage.laplace(grey)[region].var())


def region_mse(image: Image.Image, photo: Image.Image, region: np.ndarray) -> float:
    """Mean squared difference of the RGB pixels (in [0, 1]) of ``image`` and ``photo`` over ``region``."""
    if not region.any():
        return float("nan")
    a = np.asarray(image.convert("RGB"), dtype=np.float64)[region] / 255
    b = np.asarray(photo.convert("RGB"), dtype=np.float64)[region] / 255
    return float(((a - b) ** 2).mean())


class PasteMeter:
    """Pastes a face's projection and edits back into its photo in each mode and measures the results.

    dlib's C++ recognition network (``magec.faces.recognition.FaceRecognizer``) is loaded once, here."""

    def __init__(self, modes: Sequence[str] = PASTE_MODES) -> None:
        from magec.faces.recognition import FaceRecognizer

        unknown = [m for m in modes if m not in PASTE_MODES]
        if unknown or not modes:
            raise ValueError(f"paste modes must be among {', '.join(PASTE_MODES)}; got {list(modes)}")
        self.modes = tuple(modes)
        self._recognizer = FaceRecognizer()

    def measure(self, face: PhotoFace, projection: Image.Image, edits: Sequence[Image.Image]) -> list[dict[str, Any]]:
        """One row per mode for the projection (``edit`` -1: amount 0) and per mode and edit (``edit`` k).

        ``projection`` and ``edits`` are the generator's squares (same size) of the unedited and edited codes.
        Rows: ``mode``, ``edit``, ``sharpness`` (the face region's Laplacian variance over the photo's: 1 is as
        sharp as the photo), ``mse_face`` / ``mse_outside`` (to the photo, inside the face region / where the
        mask is 0) and ``id_distance`` (dlib, photo -> pasted image; NaN when dlib finds no face in one)."""
        photo = face.photo.convert("RGB")
        mask = face_mask(photo.size, face.landmarks)
        inside, outside = mask > 0.5, mask == 0
        box = face.identity_box()
        near = tuple((face.frame.square_corners().mean(0) - np.array(box[:2])).tolist())
        reference = self._recognizer.descriptor(photo.crop(box), near)
        photo_focus = laplacian_variance(photo, inside) if inside.any() else 0.0
        rows: list[dict[str, Any]] = []
        for mode in self.modes:
            for k, square in enumerate([projection, *edits]):
                pasted = paste_edit(photo, square, projection, face.frame, face.landmarks, mask, mode)
                described = self._recognizer.descriptor(pasted.crop(box), near)
                found = reference is not None and described is not None
                rows.append(
                    {
                        "mode": mode,
                        "edit": k - 1,
                        "sharpness": laplacian_variance(pasted, inside) / photo_focus if photo_focus > 0 else None,
                        "mse_face": _finite(region_mse(pasted, photo, inside)),
                        "mse_outside": _finite(region_mse(pasted, photo, outside)),
                        "id_distance": float(np.linalg.norm(reference - described)) if found else None,
                    }
                )
        return rows


def _finite(value: float) -> float | None:
    """``value``, or None (an empty CSV cell, JSON null) when it could not be measured (NaN or infinite)."""
    return value if np.isfinite(value) else None
