"""face-api's facial-expression and age/gender networks as differentiable torch modules.

The MIT npm package ``@vladmandic/face-api`` (version pinned in ``FACE_API_VERSION``) ships, in its
``model/`` folder, two small TF.js networks that see more of a face than dlib's age/gender pair:

- ``face_expression_model`` (0.32 M weights): four densely connected blocks of depthwise-separable
  convolutions on a 112x112 face, average pooling and a 7-way softmax over ``EXPRESSIONS``;
- ``age_gender_model`` (0.42 M weights): a TinyXception (entry flow, two residual middle blocks, exit
  flow) with two heads: age in years (regression) and a 2-way softmax over (male, female).

``scripts/fetch_face_api.sh`` (``make face-api``) fetches them with npm into magec's weights folder;
magec never downloads at run time. The networks are rebuilt here from the TF.js tensors (``tfjs``);
every tensor of a manifest is used and none may be missing. Preprocessing follows face-api: a face
crop padded to a square with black (the crop centred), resized bilinearly to 112x112 (TF's legacy
sampling, ``face_api_input``), per-channel mean RGB (122.782, 117.001, 104.298) subtracted, divided by 255.

The modules take magec images, (B, 3, H, W) in [-1, 1], and cut a square face box (``ChipBox``, as
the dlib describer does) resized differentiably to 112x112; ``forward_input`` runs the network on an
already prepared face-api input.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Self

import torch
import torch.nn.functional as F
from torch import nn

from magec.describers.tfjs import load_tfjs_weights
from magec.errors import MagecError, file_error
from magec.faces.chips import ChipBox, crop_chip
from magec.io.checkpoints import strict_load
from magec.weights import FACE_API_DIR, weights_dir

FACE_API_PACKAGE = "@vladmandic/face-api"
FACE_API_VERSION = "1.7.15"
PINNED = f"{FACE_API_PACKAGE}@{FACE_API_VERSION}"
EXPRESSION_MANIFEST = "model/face_expression_model-weights_manifest.json"
AGE_GENDER_MANIFEST = "model/age_gender_model-weights_manifest.json"
#: SHA-256 of the files as published in face-api 1.7.15 (the tarball's sha512 is checked at fetch time).
FILE_SHA256: dict[str, str] = {
    EXPRESSION_MANIFEST: "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8",
    "model/face_expression_model.bin": "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
    AGE_GENDER_MANIFEST: "74b60bf3ebf981bf4e661e9cca3a185614e10b25d797118b62e2a68d3ff2569f",
    "model/age_gender_model.bin": "49f92bbc0afef2342c4385e4a2b0acb6d7a727c6f0aa539499719a81acf9abaa",
}

#: Output order of the expression network (face-api's FACE_EXPRESSION_LABELS).
EXPRESSIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
#: Output order of the gender head: face-api reads index 0 as P(male).
GENDERS: tuple[str, ...] = ("male", "female")
INPUT_SIZE = 112
MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)

#: The whole image as the face box: what face-api's nets see when given a face crop directly.
FULL_FRAME = ChipBox(center_x=0.5, center_y=0.5, size=1.0)


def face_api_dir() -> Path:
    """Where ``scripts/fetch_face_api.sh`` puts the files: ``<weights folder>/face-api-1.7.15``."""
    return weights_dir() / FACE_API_DIR


def verify_files(root: str | Path, names: tuple[str, ...] = tuple(FILE_SHA256)) -> None:
    """Check the pinned SHA-256 of each named file under ``root``; a changed byte is refused with one line."""
    root = Path(root)
    for rel in names:
        path = root / rel
        if not path.is_file():
            raise file_error(path, f"missing; run scripts/fetch_face_api.sh (make face-api) to fetch {PINNED}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != FILE_SHA256[rel]:
            raise file_error(path, f"sha256 {digest[:16]}... is not that of {PINNED}; corrupted or another version")


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF's 'same' padding along one axis: output ceil(size / stride), any odd pixel goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    top, bottom = _same_pads(x.shape[-2], kernel, stride)
    left, right = _same_pads(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class Conv(nn.Module):
    """TF ``conv2d(..., 'same') + bias``; ``filters`` in torch layout (out, in, k, k)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.register_buffer("filters", torch.zeros(cout, cin, kernel, kernel))
        self.register_buffer("bias", torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(_pad_same(x, self.kernel, self.stride), self.filters, self.bias, stride=self.stride)


class SeparableConv(nn.Module):
    """TF ``separableConv2d(..., 'same') + bias``: 3x3 depthwise (strided), then 1x1 pointwise."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.register_buffer("depthwise_filter", torch.zeros(cin, 1, 3, 3))
        self.register_buffer("pointwise_filter", torch.zeros(cout, cin, 1, 1))
        self.register_buffer("bias", torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(_pad_same(x, 3, self.stride), self.depthwise_filter, stride=self.stride, groups=x.shape[1])
        return F.conv2d(x, self.pointwise_filter, self.bias)


class Dense(nn.Module):
    """TF ``matMul(x, weights) + bias``; ``weights`` in torch layout (out, in)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.register_buffer("weights", torch.zeros(cout, cin))
        self.register_buffer("bias", torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weights, self.bias)


class DenseBlock4(nn.Module):
    """face-api's dense block: four convolutions, each fed the ReLU of the sum of all earlier outputs."""

    def __init__(self, cin: int, cout: int, first: bool = False) -> None:
        super().__init__()
        self.conv0 = Conv(cin, cout, 3, 2) if first else SeparableConv(cin, cout, 2)
        self.conv1 = SeparableConv(cout, cout)
        self.conv2 = SeparableConv(cout, cout)
        self.conv3 = SeparableConv(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + (out2 + out3)))
        return F.relu(out1 + (out2 + (out3 + out4)))


class ReductionBlock(nn.Module):
    """TinyXception's downsampling block: two separable convs + 3x3/2 max pool, plus a strided 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, activate_input: bool = True) -> None:
        super().__init__()
        self.activate_input = activate_input
        self.separable_conv0 = SeparableConv(cin, cout)
        self.separable_conv1 = SeparableConv(cout, cout)
        self.expansion_conv = Conv(cin, cout, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.separable_conv0(F.relu(x) if self.activate_input else x)
        out = self.separable_conv1(F.relu(out))
        out = F.max_pool2d(_pad_same(out, 3, 2, value=-math.inf), 3, 2)
        return out + self.expansion_conv(x)


class MainBlock(nn.Module):
    """TinyXception's residual block: three ReLU + separable conv steps added to the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.separable_conv0 = SeparableConv(channels, channels)
        self.separable_conv1 = SeparableConv(channels, channels)
        self.separable_conv2 = SeparableConv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.separable_conv0(F.relu(x))
        out = self.separable_conv1(F.relu(out))
        out = self.separable_conv2(F.relu(out))
        return out + x


def _to_torch_layout(name: str, tensor: torch.Tensor, source: Path) -> torch.Tensor:
    """A TF.js tensor (HWIO filters, IO matrices) in the layout our buffers use."""
    leaf = name.rsplit("/", 1)[-1]
    rank = {"filters": 4, "depthwise_filter": 4, "pointwise_filter": 4, "weights": 2, "bias": 1}.get(leaf)
    if rank is None:
        raise file_error(source, f"unexpected weight {name} (not a filter, weight matrix or bias)")
    if tensor.dim() != rank:
        raise file_error(source, f"weight {name} has rank {tensor.dim()}, expected {rank}")
    if leaf == "depthwise_filter":
        if tensor.shape[3] != 1:
            raise file_error(source, f"weight {name} has channel multiplier {tensor.shape[3]}, expected 1")
        return tensor.permute(2, 3, 0, 1).contiguous()
    if leaf in ("filters", "pointwise_filter"):
        return tensor.permute(3, 2, 0, 1).contiguous()
    if leaf == "weights":
        return tensor.t().contiguous()
    return tensor


class _FaceApiNet(nn.Module):
    """Shared loading, cropping and normalisation of the two face-api networks."""

    manifest: str = ""
    layout: str = ""

    def __init__(self, chip: ChipBox = FULL_FRAME) -> None:
        super().__init__()
        self.chip = chip
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)

    def load_weights(self, root: str | Path | None = None, verify: bool = True) -> None:
        """Fill the buffers from ``root/model/<net>-weights_manifest.json`` (default: the fetched folder), strictly."""
        root = Path(root) if root is not None else face_api_dir()
        manifest = root / self.manifest
        if verify:
            verify_files(root, (self.manifest, self.manifest.replace("-weights_manifest.json", ".bin")))
        tensors = load_tfjs_weights(manifest)
        state = {name.replace("/", "."): _to_torch_layout(name, t, manifest) for name, t in tensors.items()}
        strict_load(self, state, manifest, self.layout)
        self.requires_grad_(False)
        self.eval()

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """face-api's input scaling: RGB bytes (0..255) minus the mean colour, divided by 255."""
        return (pixels - self.mean_rgb) / 255.0

    def net_input(self, images: torch.Tensor) -> torch.Tensor:
        """Cut ``self.chip`` from images in [-1, 1] (B, 3, H, W), resize to 112x112, normalise as face-api does."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise MagecError(f"face-api nets expect RGB images (B, 3, H, W), got {tuple(images.shape)}")
        (chip,) = crop_chip(images, self.chip, (INPUT_SIZE,))
        return self.normalise((chip + 1.0) * 127.5)

    @classmethod
    def from_weights(cls, root: str | Path | None = None, chip: ChipBox = FULL_FRAME, verify: bool = True) -> Self:
        """The network with face-api's weights from ``root`` (default ``face_api_dir()``)."""
        net = cls(chip)
        net.load_weights(root, verify)
        return net


class FaceExpressionNet(_FaceApiNet):
    """face-api's expression classifier: ``forward`` gives P(expression) over ``EXPRESSIONS``, shape (B, 7)."""

    manifest = EXPRESSION_MANIFEST
    layout = "face-api's face_expression_model"

    def __init__(self, chip: ChipBox = FULL_FRAME) -> None:
        super().__init__(chip)
        self.dense0 = DenseBlock4(3, 32, first=True)
        self.dense1 = DenseBlock4(32, 64)
        self.dense2 = DenseBlock4(64, 128)
        self.dense3 = DenseBlock4(128, 256)
        self.fc = Dense(256, len(EXPRESSIONS))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-softmax scores for a normalised (B, 3, 112, 112) input."""
        if tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise MagecError(f"face_expression_model expects (B, 3, 112, 112) inputs, got {tuple(x.shape)}")
        out = self.dense3(self.dense2(self.dense1(self.dense0(x))))
        return self.fc(F.avg_pool2d(out, 7, 2).flatten(1))

    def forward_input(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities for a normalised face-api input (``normalise(face_api_input(...))``)."""
        return torch.softmax(self.logits(x), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_input(self.net_input(images))


class AgeGenderNet(_FaceApiNet):
    """face-api's age/gender net: ``forward`` gives (age in years (B,), P(male, female) (B, 2))."""

    manifest = AGE_GENDER_MANIFEST
    layout = "face-api's age_gender_model (TinyXception, 2 middle blocks)"

    def __init__(self, chip: ChipBox = FULL_FRAME) -> None:
        super().__init__(chip)
        self.entry_flow = nn.Module()
        self.entry_flow.conv_in = Conv(3, 32, 3, 2)
        self.entry_flow.reduction_block_0 = ReductionBlock(32, 64, activate_input=False)
        self.entry_flow.reduction_block_1 = ReductionBlock(64, 128)
        self.middle_flow = nn.Module()
        self.middle_flow.main_block_0 = MainBlock(128)
        self.middle_flow.main_block_1 = MainBlock(128)
        self.exit_flow = nn.Module()
        self.exit_flow.reduction_block = ReductionBlock(128, 256)
        self.exit_flow.separable_conv = SeparableConv(256, 512)
        self.fc = nn.Module()
        self.fc.age = Dense(512, 1)
        self.fc.gender = Dense(512, len(GENDERS))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 512-d TinyXception features of a normalised (B, 3, 112, 112) input."""
        if tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise MagecError(f"age_gender_model expects (B, 3, 112, 112) inputs, got {tuple(x.shape)}")
        out = F.relu(self.entry_flow.conv_in(x))
        out = self.entry_flow.reduction_block_1(self.entry_flow.reduction_block_0(out))
        out = self.middle_flow.main_block_1(self.middle_flow.main_block_0(out))
        out = F.relu(self.exit_flow.separable_conv(self.exit_flow.reduction_block(out)))
        return F.avg_pool2d(out, 7, 2).flatten(1)

    def forward_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(age (B,), P(male, female) (B, 2)) for a normalised face-api input."""
        pooled = self.features(x)
        return self.fc.age(pooled)[:, 0], torch.softmax(self.fc.gender(pooled), dim=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_input(self.net_input(images))


def pad_to_square(image: torch.Tensor) -> torch.Tensor:
    """face-api's ``padToSquare(…, centred)``: black (0) rows or columns around a (3, H, W) image.

    The larger half of the padding goes after the image (``Math.round(diff / 2)``), the rest before.
    """
    h, w = image.shape[-2:]
    diff = abs(h - w)
    after = math.floor(diff * 0.5 + 0.5)
    before = diff - after
    if diff == 0:
        return image
    return F.pad(image, (before, after, 0, 0) if h > w else (0, 0, before, after))


def resize_bilinear_legacy(image: torch.Tensor, size: int) -> torch.Tensor:
    """TF's ``resizeBilinear`` with ``alignCorners=false, halfPixelCenters=false``: source = dest * in / out."""
    h, w = image.shape[-2:]

    def axis(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(size, dtype=torch.float64) * (n_in / size)
        lo = src.floor()
        frac = (src - lo).to(image.dtype).to(image.device)
        lo_i = lo.long().clamp(0, n_in - 1)
        hi_i = src.ceil().long().clamp(max=n_in - 1)
        return lo_i.to(image.device), hi_i.to(image.device), frac

    r0, r1, fr = axis(h)
    c0, c1, fc = axis(w)
    top = image[..., r0, :]
    bottom = image[..., r1, :]

    def cols(rows: torch.Tensor) -> torch.Tensor:
        left, right = rows[..., c0], rows[..., c1]
        return left + (right - left) * fc

    t, b = cols(top), cols(bottom)
    return t + (b - t) * fr.view(-1, 1)


def face_api_input(faces: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """face-api's ``toBatchTensor(112, centred)`` for face crops given as (3, H, W) RGB in 0..255 (any sizes).

    Returns the (B, 3, 112, 112) batch before normalisation; feed ``net.normalise`` of it to ``forward_input``.
    """
    if isinstance(faces, torch.Tensor):
        faces = list(faces) if faces.dim() == 4 else [faces]
    out = []
    for face in faces:
        if face.dim() != 3 or face.shape[0] != 3 or min(face.shape[1:]) < 1:
            raise MagecError(f"face-api inputs are RGB crops (3, H, W), got {tuple(face.shape)}")
        square = pad_to_square(face.float())
        out.append(square if square.shape[-1] == INPUT_SIZE else resize_bilinear_legacy(square, INPUT_SIZE))
    return torch.stack(out)
