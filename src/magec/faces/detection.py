"""Faces in photos: dlib's frontal face detector and 68 landmarks, on a memory-bounded copy.

The 68-point shape predictor ships in the PyPI package ``face-recognition-models`` (read from where pip
put it, without importing that package, which pulls ``pkg_resources``); dlib comes from ``dlib-bin``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from magec.errors import MagecError, file_error
from magec.weights import landmarks5_file_path, landmarks68_file_path

#: Faces are searched for on a copy whose longer side is at most this many pixels (dlib's HOG detector
#: upsamples once, so its memory and time grow with 4x the pixels it is given); landmarks are scaled back.
#: (Searching a copy half as large is 4x faster on a 2048-pixel photo, but moves the 68 landmarks of a large
#: face by up to 8-47 pixels: dlib's predictor moves them up to 22 pixels for a 4-pixel shift of its box.)
DETECTION_SIDE = 2048


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


#: The one wording of "no face" for every command that looks for faces.
NO_FACE = "no face found (dlib's frontal face detector needs a roughly frontal face of at least ~40 pixels)"


def detection_array(image: Image.Image | np.ndarray, max_side: int = DETECTION_SIDE) -> tuple[np.ndarray, int]:
    """``image`` as a uint8 RGB array reduced by an integer factor to at most ``max_side``: (array, factor)."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    pil = pil if pil.mode == "RGB" else pil.convert("RGB")
    factor = max(1, -(-max(pil.size) // max_side))
    small = pil.reduce(factor) if factor > 1 else pil
    return np.ascontiguousarray(np.asarray(small, dtype=np.uint8)), factor


class ChipShapes(Protocol):
    """Something that keeps dlib's 5-point model loaded: the landmarks a face chip is placed from."""

    def chip_shape(self, rgb: np.ndarray, box: Any) -> Any: ...


class LandmarkDetector:
    """dlib's frontal face detector + 68-point shape predictor; load once, reuse for many photos (and the 5-point
    model of face chips, loaded at its first use)."""

    def __init__(self, predictor: str | Path | None = None, upsample: int = 1) -> None:
        try:
            import dlib
        except ImportError:
            raise MagecError("face alignment needs dlib (pip install dlib-bin==20.0.1, a prebuilt wheel)") from None
        path = Path(predictor) if predictor is not None else landmarks68_file_path()
        self._detector = dlib.get_frontal_face_detector()
        try:
            self._predictor = dlib.shape_predictor(str(path))
        except RuntimeError as exc:
            raise file_error(path, f"not a dlib shape predictor ({exc})") from None
        self.upsample = upsample
        self._chip_predictor: Any = None

    def load_chip_model(self) -> None:
        """Read dlib's 5-point model now (else at the first ``chip_shape``)."""
        if self._chip_predictor is None:
            import dlib

            self._chip_predictor = dlib.shape_predictor(str(landmarks5_file_path()))

    def chip_shape(self, rgb: np.ndarray, box: Any) -> Any:
        """dlib's 5 chip landmarks of the face in ``box`` (a ``dlib.rectangle`` in ``rgb``), for
        ``get_face_chip_details``; the 5-point model is read once, at the first call."""
        self.load_chip_model()
        return self._chip_predictor(rgb, box)

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


class SharedDetector:
    """One ``LandmarkDetector`` for a server's threads, read at its first use or in the background (``preload``:
    dlib's two models take 2-3 s to read, which a server's first photo would otherwise wait for), then used by one
    thread at a time (dlib's objects are not documented as thread-safe). A failed background read is tried again,
    and reported, at the first use."""

    def __init__(self, upsample: int = 1) -> None:
        self.upsample = upsample
        self._lock = threading.Lock()
        self._detector: LandmarkDetector | None = None
        self._preloading = False

    def preload(self) -> None:
        """Start reading the models in a background thread (once); a use meanwhile waits for them."""
        if not self._preloading:
            self._preloading = True
            threading.Thread(target=self._read, name="magec-face-models", daemon=True).start()

    def _read(self) -> None:
        try:
            with self._lock:
                self._load().load_chip_model()
        except Exception:  # noqa: BLE001 - the first use reads the models again and says what is wrong
            pass

    def _load(self) -> LandmarkDetector:
        if self._detector is None:
            self._detector = LandmarkDetector(upsample=self.upsample)
        return self._detector

    def detect(self, image: Image.Image | np.ndarray, max_side: int = DETECTION_SIDE) -> list[Face]:
        """``LandmarkDetector.detect``, waiting for the models and for any other thread's use."""
        with self._lock:
            return self._load().detect(image, max_side)

    def chip_shape(self, rgb: np.ndarray, box: Any) -> Any:
        """``LandmarkDetector.chip_shape``, likewise."""
        with self._lock:
            return self._load().chip_shape(rgb, box)
