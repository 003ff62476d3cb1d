"""The paper's F for faces: a ResNet predicting CelebA's 40 binary attributes (spec ``celeba:PATH``).

The paper trains its own attribute network on CelebA; ``magec train-describer celeba`` does the same
(see ``celeba_training``) and writes a ``.safetensors`` file whose JSON metadata records the
architecture, the attribute names (as in ``list_attr_celeba.txt``), the input size and the
normalisation, so the file alone rebuilds the describer.

Geometry: training images (CelebA's aligned 178 x 218 crops) and generator outputs are both reduced to
their largest centred square and resized to ``input_size``; the network then sees ImageNet-normalised
RGB, which lets a torchvision ImageNet checkpoint initialise it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from magec import validation
from magec.describers.base import Attribute, Describer, DescriptorLayout, Head
from magec.errors import MagecError, file_error
from magec.io.atomic import atomic_path
from magec.io.checkpoints import read_state_dict, strict_load
from magec.io.images import IMAGENET_MEAN, IMAGENET_STD
from magec.io.resize import center_square_batch, resize_square

#: The 40 attributes, in the column order of CelebA's ``list_attr_celeba.txt``.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)
ARCHITECTURES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50")
FORMAT = "magec-celeba-describer"
FORMAT_VERSION = "1"


def is_magec_describer(path: str | Path) -> bool:
    """True for a describer file magec wrote (so ``train-describer`` may replace it)."""
    from magec.io.checkpoints import safetensors_format

    return safetensors_format(path) == FORMAT


@dataclass(frozen=True)
class CelebAConfig:
    """What a saved describer needs to be rebuilt; defaults suit a CelebA-trained ResNet-18."""

    arch: str = "resnet18"
    input_size: int = 128
    attributes: tuple[str, ...] = CELEBA_ATTRIBUTES
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        validation.choice("--arch", self.arch, ARCHITECTURES)
        validation.integer("--input-size", self.input_size, 32, 1024)
        if not self.attributes:
            raise MagecError("a CelebA describer needs at least one attribute")
        for value in self.std:
            validation.positive("normalisation std", value)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CelebAConfig:
        data = json.loads(text)
        return cls(
            arch=str(data["arch"]),
            input_size=int(data["input_size"]),
            attributes=tuple(data["attributes"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
        )


def binary_layout(names: tuple[str, ...]) -> DescriptorLayout:
    """One sigmoid head and one binary attribute per name."""
    return DescriptorLayout(tuple(Head(n, "binary", 1) for n in names), tuple(Attribute(n, n, "binary") for n in names))


def build_resnet(arch: str, num_outputs: int, seed: int = 0) -> nn.Module:
    """A torchvision ResNet with ``num_outputs`` logits, initialised from ``seed`` (never downloads weights)."""
    import torchvision.models as tvm

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return getattr(tvm, arch)(weights=None, num_classes=num_outputs)


class CelebADescriber(Describer):
    """ResNet + one logit per CelebA attribute; ``forward`` returns the 40 sigmoid probabilities."""

    def __init__(self, config: CelebAConfig = CelebAConfig(), seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.layout = binary_layout(config.attributes)
        self.net = build_resnet(config.arch, len(config.attributes), seed)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)
        self.spec = "celeba"
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images of any size -> normalised ``input_size`` squares (differentiable)."""
        x = resize_square(center_square_batch(images), self.config.input_size)
        return ((x + 1.0) / 2.0 - self.mean) / self.std

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, n_attributes) logits; the training loop calls this with ``self.net`` in train mode."""
        return self.net(self.preprocess(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images).sigmoid()

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the four ResNet stages (usable as a perceptual feature space)."""
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(self.preprocess(images)))))
        feats = []
        for stage in (n.layer1, n.layer2, n.layer3, n.layer4):
            x = stage(x)
            feats.append(x)
        return feats

    # ---- files ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the weights and config as ``.safetensors`` (atomically)."""
        from safetensors.torch import save_file

        path = Path(path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(
                state, str(tmp), metadata={"format": FORMAT, "version": FORMAT_VERSION, "config": self.config.to_json()}
            )
        return path

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> CelebADescriber:
        """Rebuild a describer saved by ``save`` (strict load; wrong files are refused with a one-line error)."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise file_error(
                path, "no such file (expected a CelebA describer .safetensors from `magec train-describer celeba`)"
            )
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise file_error(path, f"not a safetensors file ({exc})") from None
        if meta.get("format") != FORMAT:
            raise file_error(
                path, f"not a magec CelebA describer (metadata format is {meta.get('format')!r}, expected {FORMAT!r})"
            )
        try:
            config = CelebAConfig.from_json(meta["config"])
            model = cls(config)
        except (KeyError, TypeError, ValueError) as exc:
            raise file_error(path, f"bad describer metadata ({exc})") from None
        strict_load(model.net, state, path, f"a torchvision {config.arch} with {len(config.attributes)} outputs")
        model.spec = f"celeba:{path}"
        return model.to(device)

    def load_imagenet_backbone(self, path: str | Path) -> None:
        """Initialise all but the final layer from a torchvision ImageNet checkpoint (``resnet18-f37072fd.pth``)."""
        state = read_state_dict(path, f"a torchvision {self.config.arch} checkpoint")
        if "fc.weight" not in state:
            raise file_error(path, f"no fc.weight: not a torchvision {self.config.arch} classifier checkpoint")
        own_fc = {k: v for k, v in self.net.state_dict().items() if k.startswith("fc.")}
        merged = {k: v for k, v in state.items() if not k.startswith("fc.")} | own_fc
        strict_load(self.net, merged, path, f"torchvision's {self.config.arch}")
