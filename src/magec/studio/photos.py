"""One input of the studio page: the generator's square and, for a photo, the photo with its face located.

Kept apart from the session (``magec.studio.session``) because it is plain data with one derived piece, the
paste region, that every slider release reuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from magec.faces.frame import FaceFrame
from magec.faces.paste import face_mask
from magec.io.images import tensor_to_pil

#: Margin (a fraction of the face's size) around the landmarks of the region a paste works in: the feathered
#: mask (``face_mask``: eroded by 0.04 of the face, blurred with sigma 0.03 truncated at 4 sigma) is the same
#: computed there as over the whole photo, and a slider release does not touch the rest of a 40 MP photo.
PASTE_MARGIN = 0.25


@dataclass
class FramedPhoto:
    """One input of the page: the square the generator sees and, for a photo, the photo itself (in memory,
    at the resolution it was uploaded) with where the square sits in it and the face's 68 landmarks."""

    image: Image.Image
    photo: Image.Image | None = None
    frame: FaceFrame | None = None
    landmarks: np.ndarray | None = None
    #: How many faces the photo holds, and which one is framed (0 = the largest).
    faces: int = 1
    face: int = 0

    _region: PasteRegion | None = field(default=None, repr=False)

    @property
    def can_paste(self) -> bool:
        return self.photo is not None and self.frame is not None and self.landmarks is not None

    def release(self) -> None:
        """Drop the photo and its paste region (its viewer has gone; the web framework may keep the page's state
        for an hour): what stays is the generator-sized square."""
        self.photo, self._region = None, None

    def paste_region(self) -> PasteRegion:
        """The part of the photo around the face, with the framing and landmarks moved into it and its face
        mask (computed once per photo, then reused by every paste)."""
        if self._region is None:
            assert self.photo is not None and self.frame is not None and self.landmarks is not None
            lo, hi = self.landmarks.min(0), self.landmarks.max(0)
            margin = PASTE_MARGIN * float((hi - lo).max()) + 2.0
            width, height = self.photo.size
            left, top = max(0, int(np.floor(lo[0] - margin))), max(0, int(np.floor(lo[1] - margin)))
            right, bottom = min(width, int(np.ceil(hi[0] + margin)) + 1), min(height, int(np.ceil(hi[1] + margin)) + 1)
            size = (right - left, bottom - top)
            f = self.frame
            frame = FaceFrame((f.origin[0] - left, f.origin[1] - top), f.u, f.v, size)
            landmarks = self.landmarks - np.array([left, top], dtype=np.float64)
            photo = self.photo.crop((left, top, right, bottom))
            self._region = PasteRegion((left, top), photo, frame, landmarks, face_mask(size, landmarks))
        return self._region


@dataclass(frozen=True)
class PasteRegion:
    """Where a photo's face is pasted: the region's top-left corner in the photo, its pixels, the frame and
    landmarks in its coordinates, and the feathered face mask."""

    corner: tuple[int, int]
    photo: Image.Image
    frame: FaceFrame
    landmarks: np.ndarray
    mask: np.ndarray


#: The longest side of an image in the page: a larger generator's images (a 1024-px StyleGAN2) are reduced for the
#: page, whose squares are at most 256 CSS pixels (twice that on a high-density screen); downloads keep them whole.
DISPLAY_MAX_SIDE = 512


def display(image: torch.Tensor | Image.Image, max_side: int = DISPLAY_MAX_SIDE) -> Image.Image:
    """An image for the page: at its own resolution (the page enlarges a small generator image with square pixels,
    CSS ``image-rendering: pixelated``, so a 64-px image travels as 64 px: nothing invented, a sixteenth of the
    pixels to encode and decode), reduced when its longer side exceeds ``max_side``."""
    pil = image if isinstance(image, Image.Image) else tensor_to_pil(image)
    if max(pil.size) > max_side:
        pil = pil.copy()
        pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return pil


def astronaut_photo() -> Image.Image:
    """scikit-image's astronaut (Eileen Collins), the page's example photo."""
    from skimage import data

    return Image.fromarray(data.astronaut())
