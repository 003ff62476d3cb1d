"""FFHQ-style face alignment of real photos, from dlib's 68 facial landmarks.

StyleGAN generators trained on FFHQ only reproduce faces framed the way FFHQ was made: the FFHQ
creation procedure derives an oriented square from the eye centres and the mouth corners, then crops,
reflect-pads (blurring the padded border) and resamples that square. We follow that procedure:

1. eye centres = mean of each eye's six landmarks; mouth centre = midpoint of the two mouth corners;
2. ``e2e`` = right eye - left eye, ``e2m`` = mouth centre - eye midpoint;
3. x axis = ``e2e`` minus ``e2m`` turned by 90 degrees (the average of the two cues for "horizontal"),
   scaled to half-side max(2 |e2e|, 1.8 |e2m|); y axis = x turned by 90 degrees;
4. centre = eye midpoint + 0.1 ``e2m``; the square has corners centre -/+ x -/+ y;
5. shrink the photo when the square is much larger than the output, crop around the square, pad by
   reflection when the square leaves the photo (with the padded band blurred and faded to the median
   colour, as FFHQ does), then sample the square with a bilinear quad transform at ``supersample``
   times the output size and downsample with a Lanczos filter.

Landmarks come from dlib's HOG frontal face detector and the 68-point shape predictor shipped in the
PyPI package ``face-recognition-models`` (located on disk without importing that package, which pulls
``pkg_resources``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.ndimage
from PIL import Image

from magec.errors import MagecError, file_error
from magec.faces.detection import DETECTION_SIDE, Face, LandmarkDetector, select_face
from magec.faces.frame import FaceFrame
from magec.io.images import image_size, read_image
from magec.validation import DEFAULT_MAX_PIXELS, MAX_OUTPUT_SIDE

#: Eye centres (x, y) in an FFHQ-aligned image, as fractions of its side. They follow from the
#: procedure above for a face whose eye-to-mouth distance is 1/0.9 of its eye-to-eye distance (where
#: both terms of the half-side agree): eyes 1/4 of the side apart, 0.1 |e2m| above the centre.
#: The first is the eye on the image's left (the subject's right eye).
FFHQ_LEFT_EYE: tuple[float, float] = (0.375, 0.5 - 0.1 / 3.6)
FFHQ_RIGHT_EYE: tuple[float, float] = (0.625, 0.5 - 0.1 / 3.6)


@dataclass(frozen=True)
class AlignConfig:
    """Knobs of the FFHQ procedure; defaults are the FFHQ creation script's values."""

    #: Sample the quad at this multiple of the output size, then downsample (FFHQ: 4096 for 1024).
    supersample: int = 4
    #: Reflect-pad (with blurred, faded border) when the crop square leaves the photo.
    padding: bool = True
    #: Upsampling passes of dlib's detector (1 finds faces down to about 40 pixels).
    upsample: int = 1


def ffhq_quad(face: Face) -> np.ndarray:
    """The oriented square FFHQ crops for ``face``: corners (4, 2) top-left, bottom-left, bottom-right, top-right."""
    eye_l, eye_r = face.eye_centres
    eye_mid = (eye_l + eye_r) / 2.0
    e2e = eye_r - eye_l
    e2m = face.mouth_centre - eye_mid
    # e2m turned by -90 degrees points along +x for an upright face; averaging it with e2e makes the
    # horizontal axis robust to a tilted eye line or mouth.
    x_axis = e2e + np.array([e2m[1], -e2m[0]])
    x_axis /= np.hypot(*x_axis)
    x_axis *= max(2.0 * np.hypot(*e2e), 1.8 * np.hypot(*e2m))
    y_axis = np.array([-x_axis[1], x_axis[0]])
    centre = eye_mid + 0.1 * e2m
    return np.stack(
        [centre - x_axis - y_axis, centre - x_axis + y_axis, centre + x_axis + y_axis, centre + x_axis - y_axis]
    )


def _pad_with_fade(img: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Reflect-pad (left, top, right, bottom), then blur the padded band and fade it to the median colour."""
    left, top, right, bottom = pad
    out = np.pad(img.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = out.shape[:2]
    ys = np.arange(h, dtype=np.float32)[:, None, None]
    xs = np.arange(w, dtype=np.float32)[None, :, None]
    # 0 inside the photo, rising to 1 at the outer edge of the padding.
    fx = 1.0 - np.minimum(xs / max(left, 1), (w - 1 - xs) / max(right, 1))
    fy = 1.0 - np.minimum(ys / max(top, 1), (h - 1 - ys) / max(bottom, 1))
    band = np.maximum(fx, fy).clip(0.0, None)
    sigma = qsize * 0.02
    blurred = scipy.ndimage.gaussian_filter(out, [sigma, sigma, 0])
    out += (blurred - out) * np.clip(band * 3.0 + 1.0, 0.0, 1.0)
    out += (np.median(out, axis=(0, 1)) - out) * np.clip(band, 0.0, 1.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def align_quad(image: Image.Image, quad: np.ndarray, size: int, config: AlignConfig = AlignConfig()) -> Image.Image:
    """Resample the oriented square ``quad`` of ``image`` into a ``size`` x ``size`` RGB image."""
    img = image if image.mode == "RGB" else image.convert("RGB")  # a large photo is not copied
    quad = quad.astype(np.float64).copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))

    # Crop to the quad's bounding box plus a border first, so a large photo is never resampled as a whole.
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo = np.floor(quad.min(0)).astype(int)
    hi = np.ceil(quad.max(0)).astype(int)
    crop = (
        max(lo[0] - border, 0),
        max(lo[1] - border, 0),
        min(hi[0] + border, img.width),
        min(hi[1] + border, img.height),
    )
    if crop[2] - crop[0] < img.width or crop[3] - crop[1] < img.height:
        img = img.crop(crop)
        quad -= crop[:2]

    # Shrink: a quad far larger than the output is first downsampled (cheaper, less aliasing).
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        img = img.resize(
            (int(np.rint(img.width / shrink)), int(np.rint(img.height / shrink))), Image.Resampling.LANCZOS
        )
        quad /= shrink
        qsize /= shrink
        border = max(int(np.rint(qsize * 0.1)), 3)

    # Pad when the quad leaves the photo.
    pad = (
        max(-int(np.floor(quad[:, 0].min())) + border, 0),
        max(-int(np.floor(quad[:, 1].min())) + border, 0),
        max(int(np.ceil(quad[:, 0].max())) - img.width + border, 0),
        max(int(np.ceil(quad[:, 1].max())) - img.height + border, 0),
    )
    if config.padding and max(pad) > border - 4:
        wide = int(np.rint(qsize * 0.3))
        pad = tuple(max(p, wide) for p in pad)
        img = Image.fromarray(_pad_with_fade(np.asarray(img), pad, qsize), mode="RGB")
        quad += pad[:2]

    # The supersampled canvas is capped at 4096 px (48 MiB), whatever the output size.
    transform = size * max(1, min(int(config.supersample), MAX_OUTPUT_SIDE // size))
    data = (quad + 0.5).flatten().tolist()
    img = img.transform((transform, transform), Image.Transform.QUAD, data, Image.Resampling.BILINEAR)
    if transform != size:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img


def _check_size(size: int) -> None:
    if not 8 <= size <= MAX_OUTPUT_SIDE:
        raise MagecError(f"alignment size {size}: must be between 8 and {MAX_OUTPUT_SIDE} pixels")


def align_face(
    image: Image.Image,
    size: int = 1024,
    face_index: int = 0,
    detector: LandmarkDetector | None = None,
    config: AlignConfig = AlignConfig(),
) -> Image.Image:
    """FFHQ-align one face of ``image`` to ``size`` x ``size``: the largest (``face_index`` 0) or another.

    Raises ``MagecError`` when no face is found or ``face_index`` is out of range.
    """
    _check_size(size)
    detector = detector or LandmarkDetector(upsample=config.upsample)
    return align_quad(image, ffhq_quad(select_face(detector.detect(image), face_index)), size, config)


@dataclass(frozen=True)
class AlignedFace:
    """An FFHQ-aligned face: the image, how many faces the photo has, and where the face sits in the photo."""

    image: Image.Image
    faces_found: int
    frame: FaceFrame
    #: The face's 68 landmarks in the photo's pixels (for a paste-back mask).
    landmarks: np.ndarray


def align_photo(
    photo: str | Path,
    size: int = 1024,
    face_index: int = 0,
    detector: LandmarkDetector | None = None,
    config: AlignConfig = AlignConfig(),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> AlignedFace:
    """Read ``photo`` and FFHQ-align one face (the ``face_index``-th largest). Errors name the photo.

    Memory stays bounded on large photos: faces are found on a reduced decode (JPEG DCT scaling, or a
    box reduction), and the photo is decoded again only at the scale the face's square needs.
    """
    _check_size(size)
    detector = detector or LandmarkDetector(upsample=config.upsample)
    preview = read_image(photo, max_pixels, reduce_to=DETECTION_SIDE)
    full_size = image_size(photo, max_pixels)
    faces = detector.detect(preview)
    try:
        face = select_face(faces, face_index)
    except MagecError as exc:
        raise file_error(photo, str(exc)) from None
    image, frame = align_found_face(photo, preview, full_size, face, size, config, max_pixels)
    scale = full_size[0] / preview.width
    return AlignedFace(image, len(faces), frame, (face.landmarks + 0.5) * scale - 0.5)


def align_found_face(
    photo: str | Path,
    preview: Image.Image,
    full_size: tuple[int, int],
    face: Face,
    size: int,
    config: AlignConfig = AlignConfig(),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    limit_option: str = "--max-pixels",
) -> tuple[Image.Image, FaceFrame]:
    """FFHQ-align ``face``, found in ``preview`` (the file ``photo`` decoded, reduced or whole, at ``full_size``):
    the aligned square and its ``FaceFrame`` in the whole photo's pixels. The square is sampled from ``preview``
    when it is large enough, else from the photo decoded again at the scale the square needs."""
    scale = full_size[0] / preview.width
    quad = (ffhq_quad(face) + 0.5) * scale - 0.5  # in full-resolution pixels
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    # The FFHQ procedure keeps the square at least twice the output size before sampling it. A photo
    # that was decoded whole already (not a JPEG, or a small one) is not decoded again.
    needed = int(max(full_size) * min(1.0, 2.0 * size / qsize)) + 1
    if max(preview.size) >= needed:
        source = preview
    else:
        source = read_image(photo, max_pixels, reduce_to=needed, limit_option=limit_option)
    frame = FaceFrame.from_quad(quad + 0.5, full_size)  # pixel centres at +0.5, as FaceFrame counts
    quad = (quad + 0.5) * (source.width / full_size[0]) - 0.5
    return align_quad(source, quad, size, config), frame
