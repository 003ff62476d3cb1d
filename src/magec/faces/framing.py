"""Frame a photo's face the way a generator needs it: one entry point for both kinds of generator.

The embedded DCGAN needs the face where its own faces sit (``crop_to_chip_box``, the CLI's
``--face-crop``); StyleGAN2 generators trained on FFHQ need the FFHQ alignment (``align_face``, the
CLI's ``--align``). ``magec studio`` frames every upload with ``frame_face``.
"""

from __future__ import annotations

from PIL import Image

from magec.faces.alignment import align_face
from magec.faces.crop import crop_to_chip_box

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
