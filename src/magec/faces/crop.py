"""Crop a photo so its face sits where the generator's faces sit.

The embedded DCGAN was trained on tightly framed synthetic faces, not on FFHQ-aligned photos. To invert
a real photo into it we place the face the way dlib places it on the generator's own samples: find
dlib's face chip (frontal detector + 5-point landmarks, padding 0.2, as the describer's networks expect)
in the photo, then cut the rotated square that puts that chip at the generator's measured chip box
(``magec.faces.chips.DCGAN_CHIP``). For FFHQ generators use ``magec align`` instead.
"""

from __future__ import annotations

import math

from PIL import Image

from magec.errors import MagecError
from magec.faces.chips import DCGAN_CHIP, ChipBox
from magec.faces.detection import NO_FACE, ChipShapes, Face, detection_array, select_face
from magec.faces.frame import FaceFrame
from magec.weights import landmarks5_file_path


def detect_chip(
    image: Image.Image, face_index: int = 0, faces: list[Face] | None = None, shapes: ChipShapes | None = None
) -> tuple[float, float, float, float]:
    """dlib's padding-0.2 face chip in ``image``: (centre x, centre y, side, angle in radians); largest face first.

    ``faces``: the faces a caller already found in ``image`` (``LandmarkDetector(upsample=1).detect(image)``,
    largest first), so that one detection serves framing and landmarks alike; None runs dlib's detector here.
    ``shapes``: where the 5 chip landmarks come from (a detector that keeps dlib's 5-point model loaded, e.g.
    ``LandmarkDetector``); None reads the model here."""
    import dlib

    rgb, factor = detection_array(image)
    predictor = shapes.chip_shape if shapes is not None else dlib.shape_predictor(str(landmarks5_file_path()))
    if faces is not None:
        # The same box in the detection copy (``Face.box`` is that box times ``factor``: exact integers again).
        left, top, right, bottom = (int(round(v / factor)) for v in select_face(faces, face_index).box)
        box = dlib.rectangle(left, top, right, bottom)
    else:
        found = sorted(dlib.get_frontal_face_detector()(rgb, 1), key=lambda r: r.width() * r.height(), reverse=True)
        if not found:
            raise MagecError(NO_FACE)
        if not 0 <= face_index < len(found):
            raise MagecError(f"no face {face_index}: only {len(found)} face(s) found (0 = largest)")
        box = found[face_index]
    chip = dlib.get_face_chip_details(predictor(rgb, box), size=64, padding=0.2)
    rect = chip.rect
    cx, cy = (rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2
    # Back to the full image's pixel coordinates (pixel centres at +0.5).
    return (
        (cx + 0.5) * factor - 0.5,
        (cy + 0.5) * factor - 0.5,
        float(rect.right() - rect.left()) * factor,
        float(chip.angle),
    )


def frame_face_crop(
    image: Image.Image,
    size: int,
    box: ChipBox = DCGAN_CHIP,
    face_index: int = 0,
    render: int = 256,
    faces: list[Face] | None = None,
    shapes: ChipShapes | None = None,
) -> tuple[Image.Image, FaceFrame]:
    """A ``size`` x ``size`` crop of ``image`` whose dlib face chip lands on ``box``, and where it sits in ``image``
    (``faces``, ``shapes``: see ``detect_chip``)."""
    cx, cy, side, angle = detect_chip(image, face_index, faces, shapes)
    render = max(render, size)
    k = side / (box.size * render)  # source pixels per output pixel
    cos, sin = math.cos(angle), math.sin(angle)
    u0, v0 = box.center_x * render, box.center_y * render
    # Output (u, v) -> source: centre + R(angle) * k * (u - u0, v - v0)
    a, b, d, e = k * cos, -k * sin, k * sin, k * cos
    c = cx - a * u0 - b * v0
    f = cy - d * u0 - e * v0
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # a large photo is not copied
    out = rgb.transform(
        (render, render),
        Image.Transform.AFFINE,
        (a, b, c, d, e, f),
        resample=Image.Resampling.BICUBIC,
        fillcolor=(128, 128, 128),
    )
    frame = FaceFrame((c, f), (a * render, d * render), (b * render, e * render), image.size)
    return (out.resize((size, size), Image.Resampling.LANCZOS) if render != size else out), frame


def crop_to_chip_box(
    image: Image.Image, size: int, box: ChipBox = DCGAN_CHIP, face_index: int = 0, render: int = 256
) -> Image.Image:
    """A ``size`` x ``size`` crop of ``image`` whose dlib face chip lands on ``box``."""
    return frame_face_crop(image, size, box, face_index, render)[0]


def astronaut_face(size: int, box: ChipBox = DCGAN_CHIP) -> Image.Image:
    """scikit-image's ``astronaut`` portrait (public domain, ships in the package), face-cropped for the generator."""
    from skimage import data

    return crop_to_chip_box(Image.fromarray(data.astronaut()), size, box)
