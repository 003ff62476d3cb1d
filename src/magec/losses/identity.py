"""Identity losses: 1 - cosine similarity of a frozen recognition network's embeddings.

The paper keeps the inverted face recognisable with an ArcFace ID loss, and uses a MoCo v2 ResNet-50
instead for non-face domains (e.g. Stanford Cars). Both read the checkpoints the community uses, in
their exact layouts, with ``torch.load(weights_only=True)`` and strict loading:

- ``arcface:PATH``: ``model_ir_se50.pth`` (TreB1eN's InsightFace IR-SE50 as used by pSp, e4e and PTI).
  Images are brought to 256 x 256, cropped to rows 35:223 and columns 32:220 (the face region of an
  FFHQ-aligned 256 image) and pooled to 112 x 112, as pSp's ID loss does; inputs stay in [-1, 1].
- ``moco:PATH``: ``moco_v2_800ep_pretrain.pth.tar`` (keys ``module.encoder_q.*`` of a torchvision
  ResNet-50 plus an MLP head we drop); the loss compares its 2048-d pooled features of ImageNet-normalised
  224 x 224 inputs.
- ``dlib`` / ``dlib:PATH``: dlib's face-recognition ResNet from the PyPI package face-recognition-models
  (``magec.losses.dlib_recognition``); the loss is the Euclidean descriptor distance on dlib's face chip.
- ``none``: no ID loss.
"""

from __future__ import annotations

import abc
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from magec.errors import file_error
from magec.io.checkpoints import read_checkpoint, read_state_dict, strict_load
from magec.io.images import IMAGENET_MEAN, IMAGENET_STD
from magec.io.resize import resize_square

#: InsightFace IR-50 stages: (output channels, number of units); the first unit of each stage has stride 2.
IR50_STAGES: tuple[tuple[int, int], ...] = ((64, 3), (128, 4), (256, 14), (512, 3))


class IdentityLoss(nn.Module, abc.ABC):
    """A frozen embedding network; ``forward(x, y)`` is the per-image 1 - cos(embed(x), embed(y)).

    Images are in [-1, 1], NCHW, any size (each loss crops and resizes differentiably as it needs).
    """

    spec: str = ""
    #: Factor on lambda_ID. The paper's lambda_ID = 3e-4 was set for ArcFace's 1 - cos on StyleGAN2; a network whose
    #: gradient reaches the latent on another scale declares the factor that makes the paper's value work.
    weight_scale: float = 1.0

    @property
    def name(self) -> str:
        """What produced a result, for output metadata (the spec, e.g. ``arcface:PATH``)."""
        return self.spec

    @abc.abstractmethod
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings of images in [-1, 1]."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image identity distance, shape (B,), in [0, 2]."""
        return 1.0 - F.cosine_similarity(self.embed(x), self.embed(y), dim=1)

    def train(self, mode: bool = True) -> IdentityLoss:  # always frozen
        return super().train(False)


# ---- ArcFace IR-SE50 (InsightFace, TreB1eN layout) ----------------------------------------------


class _SqueezeExcite(nn.Module):
    """Channel gating with bias-free 1x1 convolutions (keys fc1, fc2), reduction 16."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * gate.sigmoid()


class _IRSEUnit(nn.Module):
    """Pre-activation residual unit: BN, conv3x3, PReLU, conv3x3 (strided), BN, SE; 1x1 conv shortcut when widening."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        if c_in == c_out:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            _SqueezeExcite(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def ir_se50_trunk() -> tuple[nn.Sequential, nn.Sequential]:
    """IR-SE50's input layer and body of 24 units, as ``(input_layer, body)``.

    Shared by the ArcFace backbone and the e4e / pSp encoders (``magec.encoders.e4e``), whose checkpoints use
    the same ``input_layer.*`` and ``body.<unit>.*`` keys over the same units.
    """
    input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
    units: list[nn.Module] = []
    c_in = 64
    for c_out, n in IR50_STAGES:
        for i in range(n):
            units.append(_IRSEUnit(c_in if i == 0 else c_out, c_out, 2 if i == 0 else 1))
        c_in = c_out
    return input_layer, nn.Sequential(*units)


class IRSE50Backbone(nn.Module):
    """InsightFace IR-SE50 for 112 x 112 faces -> L2-normalised 512-d embedding.

    Attribute names and ``nn.Sequential`` indices reproduce the ``model_ir_se50.pth`` keys
    (``input_layer.*``, ``body.<unit>.res_layer.*``, ``body.<unit>.shortcut_layer.*``,
    ``output_layer.{0,3,4}.*``) so the published file loads strictly.
    """

    def __init__(self) -> None:
        super().__init__()
        self.input_layer, self.body = ir_se50_trunk()
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512), nn.Dropout(0.6), nn.Flatten(), nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=1)


class ArcFaceIRSE50(IdentityLoss):
    """ArcFace ID loss of pSp / e4e / PTI: 1 - cos of IR-SE50 embeddings of the central face crop."""

    spec = "arcface"

    def __init__(self) -> None:
        super().__init__()
        self.net = IRSE50Backbone()
        self.requires_grad_(False)
        self.eval()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = resize_square(images, 256)[:, :, 35:223, 32:220]
        return self.net(F.adaptive_avg_pool2d(x, (112, 112)))

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str = "cpu") -> ArcFaceIRSE50:
        """Load ``model_ir_se50.pth`` (a plain state_dict of the backbone) strictly."""
        state = read_state_dict(path, "an ArcFace IR-SE50 checkpoint (model_ir_se50.pth)")
        model = cls()
        strict_load(model.net, state, path, "the ArcFace IR-SE50 layout of model_ir_se50.pth (pSp/e4e/PTI)")
        model.spec = f"arcface:{path}"
        return model.to(device)


# ---- MoCo v2 ResNet-50 ------------------------------------------------------------------------

MOCO_PREFIX = "module.encoder_q."


class MocoResNet50(IdentityLoss):
    """Non-face ID loss: 1 - cos of a MoCo v2 ResNet-50's pooled 2048-d features."""

    spec = "moco"

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        self.net = resnet50(weights=None)
        self.net.fc = nn.Identity()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = (resize_square(images, 224) + 1.0) / 2.0
        return self.net((x - self.mean) / self.std)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str = "cpu") -> MocoResNet50:
        """Load ``moco_v2_800ep_pretrain.pth.tar``: keep ``module.encoder_q.*`` minus its ``fc`` head, strictly."""
        checkpoint = read_checkpoint(path, "a MoCo v2 checkpoint (moco_v2_800ep_pretrain.pth.tar)")
        state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise file_error(
                path, "expected a dict with key 'state_dict' (MoCo v2 layout of moco_v2_800ep_pretrain.pth.tar)"
            )
        encoder = {k[len(MOCO_PREFIX) :]: v for k, v in state.items() if k.startswith(MOCO_PREFIX)}
        if not encoder:
            first = ", ".join(list(state)[:3])
            raise file_error(path, f"no '{MOCO_PREFIX}*' keys (found e.g. {first}); not a MoCo v2 checkpoint")
        encoder = {k: v for k, v in encoder.items() if not k.startswith("fc.")}
        model = cls()
        strict_load(model.net, encoder, path, f"a torchvision ResNet-50 under '{MOCO_PREFIX}'")
        model.spec = f"moco:{path}"
        return model.to(device)
