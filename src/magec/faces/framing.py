"""Framing: how a face is cut out of a photo into the generator's square. One vocabulary for every caller.

Three framings, named as the CLI names them (``magec invert``, the studio, ``magec evaluate``; the ``framing``
value of the JSON records they write):

- ``face-crop`` (``--face-crop``): the rotated square that puts dlib's face chip where the embedded DCGAN's faces
  have theirs (``magec.faces.crop``);
- ``align`` (``--align``): FFHQ alignment, for StyleGAN2 generators trained on FFHQ (``magec.faces.alignment``);
- ``centre``: the photo's centred square, no face looked for (``magec invert`` without either option).

Framing a face gives the generator's square and a ``FaceFrame`` (``magec.faces.frame``): where that square sits in
the photo, which pasting an edit back needs. ``read_framed_photo`` is the one way a photo *file* is framed: read
(reduced when huge), framed, and the frame scaled back to the whole photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from magec.errors import MagecError, file_error
from magec.faces.alignment import AlignConfig, align_face, align_found_face, align_quad, ffhq_quad
from magec.faces.crop import crop_to_chip_box, frame_face_crop
from magec.faces.detection import DETECTION_SIDE, ChipShapes, Face, LandmarkDetector, SharedDetector, select_face
from magec.faces.frame import FaceFrame
from magec.io.images import decodes_reduced, image_size, read_image
from magec.validation import DEFAULT_MAX_PIXELS

FACE_CROP, ALIGN, CENTRE = "face-crop", "align", "centre"
#: The framings that look for a face.
FRAMINGS = (FACE_CROP, ALIGN)


def framing_for(generator_spec: str) -> str:
    """The framing a generator's training faces had: ``align`` for StyleGAN2 (FFHQ), ``face-crop`` otherwise."""
    return ALIGN if generator_spec.startswith("stylegan2") else FACE_CROP


def _check(framing: str) -> None:
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing {framing!r}; expected one of {', '.join(FRAMINGS)}")


def frame_face(image: Image.Image, size: int, framing: str, face_index: int = 0) -> Image.Image:
    """A ``size`` x ``size`` RGB crop of ``image`` with its face framed as ``framing`` says.

    Raises ``MagecError`` (one line) when no face is found, or ``face_index`` is out of range.
    """
    _check(framing)
    if framing == ALIGN:
        return align_face(image, size, face_index)
    return crop_to_chip_box(image, size, face_index=face_index)


def frame_face_located(
    image: Image.Image,
    size: int,
    framing: str,
    face_index: int = 0,
    faces: list[Face] | None = None,
    shapes: ChipShapes | None = None,
) -> tuple[Image.Image, FaceFrame]:
    """``frame_face``, and where the framed square sits in ``image`` (what pasting the edit back needs).

    The crop is the one ``frame_face`` returns; the ``FaceFrame`` is in ``image``'s pixels. ``faces``: the faces a
    caller already found in ``image`` with ``LandmarkDetector()`` (upsampling once, as both framings do), so the
    same detection also gives the landmarks for pasting back (``located_face_landmarks``); None detects here.
    ``shapes``: a detector that keeps dlib's 5-point model loaded (``face-crop`` needs it); None reads it here.
    """
    _check(framing)
    if framing == ALIGN:
        config = AlignConfig()
        found = faces if faces is not None else LandmarkDetector(upsample=config.upsample).detect(image)
        quad = ffhq_quad(select_face(found, face_index))
        return align_quad(image, quad, size, config), FaceFrame.from_quad(quad + 0.5, image.size)
    return frame_face_crop(image, size, face_index=face_index, faces=faces, shapes=shapes)


@dataclass(frozen=True)
class PhotoFraming:
    """A photo file framed: the generator's square, the photo as it was decoded to find the face (reduced when
    huge), every face found in it (in its pixels) and which one was framed, and the square's ``FaceFrame`` in
    the whole photo's pixels."""

    image: Image.Image
    photo: Image.Image
    #: None when framed without the 68-point landmarks (``read_framed_photo(..., landmarks=False)``).
    faces: list[Face] | None
    face_index: int
    frame: FaceFrame
    #: The whole photo's upright (width, height): ``photo.size`` unless the file was decoded reduced.
    full_size: tuple[int, int]

    @property
    def scale(self) -> float:
        """Whole-photo pixels per pixel of ``photo`` (1 when it was decoded whole)."""
        return self.full_size[0] / self.photo.width

    @property
    def landmarks(self) -> np.ndarray:
        """The framed face's 68 landmarks in the whole photo's pixels (for the paste-back mask)."""
        if self.faces is None:
            raise ValueError("this photo was framed without its landmarks (read_framed_photo(..., landmarks=False))")
        return (self.faces[self.face_index].landmarks + 0.5) * self.scale - 0.5


def read_framed_photo(
    path: str | Path,
    size: int,
    framing: str,
    face_index: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    detector: LandmarkDetector | SharedDetector | None = None,
    limit_option: str = "--max-pixels",
    landmarks: bool = True,
) -> PhotoFraming:
    """Read the photo at ``path`` (a large JPEG decoded reduced to about ``DETECTION_SIDE``, which bounds memory),
    find its faces once, frame the ``face_index``-th largest as ``framing`` says into ``size`` x ``size`` and
    scale its frame back to the whole photo. Errors are one line naming ``path``.

    ``align`` samples the square from the photo decoded again at the scale the square needs when the reduced
    decode is too small (``align_found_face``); ``face-crop`` cuts it from the reduced decode (the embedded
    generator's squares are far smaller). ``detector``: one kept by a caller that frames many photos (reading
    dlib's models takes a second or more); None reads one here. ``limit_option``: see ``read_image``.
    ``landmarks=False``: a ``face-crop`` framed without a ``detector`` skips dlib's 68-point model (2-3 s to read,
    and only pasting back needs it): ``faces`` is then None.
    """
    _check(framing)
    photo = read_image(path, max_pixels, reduce_to=DETECTION_SIDE, limit_option=limit_option)
    full_size = tuple(image_size(path, max_pixels) if decodes_reduced(path, DETECTION_SIDE) else photo.size)
    faces: list[Face] | None = None  # face-crop without landmarks: dlib's detector runs in frame_face_crop
    if framing == ALIGN or detector is not None or landmarks:
        detector = detector if detector is not None else LandmarkDetector(upsample=AlignConfig().upsample)
        faces = detector.detect(photo)
    try:  # no face, or not that many: one line naming the file
        if framing == ALIGN:
            face = select_face(faces or [], face_index)
        else:
            image, frame = frame_face_crop(photo, size, face_index=face_index, faces=faces, shapes=detector)
    except MagecError as exc:
        raise file_error(path, str(exc)) from None
    if framing == ALIGN:
        image, frame = align_found_face(path, photo, full_size, face, size, AlignConfig(), max_pixels, limit_option)
    elif full_size != tuple(photo.size):
        frame = frame.scaled(full_size[0] / photo.width, full_size)
    return PhotoFraming(image, photo, faces, face_index, frame, full_size)
