"""Frame a photo's face the way a generator needs it: one entry point for both kinds of generator.

The embedded DCGAN needs the face where its own faces sit (``crop_to_chip_box``, the CLI's
``--face-crop``); StyleGAN2 generators trained on FFHQ need the FFHQ alignment (``align_face``, the
CLI's ``--align``). ``magec studio`` frames every upload with ``frame_face``.
"""

from __future__ import annotations

from PIL import Image

from magec.faces.alignment import AlignConfig, align_face, align_quad, ffhq_quad
from magec.faces.crop import crop_to_chip_box, frame_face_crop
from magec.faces.detection import Face, LandmarkDetector, select_face
from magec.faces.paste import Framing

#: Framing styles: "chip-box" (the embedded DCGAN) and "ffhq" (StyleGAN2 FFHQ generators).
FRAMINGS = ("chip-box", "ffhq")


def framing_for(generator_spec: str) -> str:
    """The framing a generator's training faces had: FFHQ alignment for StyleGAN2, the chip box otherwise."""
    return "ffhq" if generator_spec.startswith("stylegan2") else "chip-box"


def frame_face(image: Image.Image, size: int, framing: str, face_index: int = 0) -> Image.Image:
    """A ``size`` x ``size`` RGB crop of ``image`` with its face framed as ``framing`` says.

    Raises ``MagecError`` (one line) when no face is found, or ``face_index`` is out of range.
    """
    if framing == "ffhq":
        return align_face(image, size, face_index)
    if framing == "chip-box":
        return crop_to_chip_box(image, size, face_index=face_index)
    raise ValueError(f"unknown framing {framing!r}; expected one of {', '.join(FRAMINGS)}")


def frame_face_located(
    image: Image.Image, size: int, framing: str, face_index: int = 0, faces: list[Face] | None = None
) -> tuple[Image.Image, Framing]:
    """``frame_face``, and where the framed square sits in ``image`` (what pasting the edit back needs).

    The crop is the one ``frame_face`` returns; the ``Framing`` is in ``image``'s pixels. ``faces``: the faces a
    caller already found in ``image`` with ``LandmarkDetector()`` (upsampling once, as both framings do), so the
    same detection also gives the landmarks for pasting back (``located_face_landmarks``); None detects here.
    """
    if framing == "ffhq":
        config = AlignConfig()
        found = faces if faces is not None else LandmarkDetector(upsample=config.upsample).detect(image)
        quad = ffhq_quad(select_face(found, face_index))
        return align_quad(image, quad, size, config), Framing.from_quad(quad + 0.5, image.size)
    if framing == "chip-box":
        return frame_face_crop(image, size, face_index=face_index, faces=faces)
    raise ValueError(f"unknown framing {framing!r}; expected one of {', '.join(FRAMINGS)}")
