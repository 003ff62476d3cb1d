"""e4e's and pSp's published encoders (``e4e_ffhq_encode.pt``, ``psp_ffhq_encode.pt``), read safely and strictly.

Both are an IR-SE50 backbone (the ArcFace units of ``magec.losses.identity``) read at three depths (c1: 128
channels at 1/4 of the input, c2: 256 at 1/8, c3: 512 at 1/16), a small feature pyramid (``latlayer1`` and
``latlayer2`` add c2 and c1 to the upsampled coarser map) and one ``GradualStyleBlock`` per W+ code: blocks 0-2
read c3, 3-6 the middle map, 7+ the fine map. The heads differ:

- e4e's ``Encoder4Editing`` (Tov et al. 2021) gives one code w0 from block 0 and adds to it, for each layer
  i >= 1, the delta of block i: codes stay close to one W (what makes them editable);
- pSp's ``GradualStyleEncoder`` (Richardson et al. 2021) takes each block's output as that layer's code.

Both then add the generator's average W (``latent_avg``, when the training options ``start_from_latent_avg``
say so), giving absolute W+ codes for the generator they were trained with. Inputs are 256 x 256 faces
aligned as FFHQ, in [-1, 1] (their transforms normalise with mean 0.5, std 0.5), as magec's images already are.

The training checkpoint is a ``torch.save``'d dict: ``state_dict`` (``encoder.*`` and ``decoder.*`` keys),
``latent_avg`` and ``opts`` (the training options as a dict). magec reads it with ``weights_only``, keeps the
``encoder.*`` keys and loads them strictly into its own modules; the decoder is ignored (magec's generator is
given separately, and must have the W+ shape the encoder was made for).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from magec.encoders.base import Encoder
from magec.errors import MagecError, file_error
from magec.generators.base import Generator
from magec.generators.stylegan2.layers import EqualLinear
from magec.io.checkpoints import check_finite, read_checkpoint, strict_load
from magec.losses.identity import ir_se50_trunk

#: The training options' ``encoder_type`` of each kind magec reads.
ENCODER_TYPES = {"e4e": "Encoder4Editing", "psp": "GradualStyleEncoder"}
#: Display names, for messages, and with their article.
KIND_NAMES = {"e4e": "e4e", "psp": "pSp"}
A_KIND = {"e4e": "an e4e", "psp": "a pSp"}
#: Style blocks [0, COARSE) read c3, [COARSE, MIDDLE) the middle pyramid level, [MIDDLE, n) the fine one.
COARSE, MIDDLE = 3, 7
#: Body units (0-based, of IR-SE50's 24) whose outputs are c1, c2 and c3: the last unit of stages 2, 3 and 4.
C1_UNIT, C2_UNIT, C3_UNIT = 6, 20, 23
#: Width of every pyramid map, style block and code.
WIDTH = 512
#: The side of the images both encoders were trained on.
INPUT_SIZE = 256
ENCODER_PREFIX = "encoder."


class GradualStyleBlock(nn.Module):
    """Strided 3x3 convolutions (LeakyReLU 0.01) down to 1 x 1, then an equalised linear map to one 512-d code.

    ``spatial`` is the side of the feature map it reads at 256-px inputs: log2(spatial) convolutions
    (keys ``convs.0``, ``convs.2``, ...), then ``linear``.
    """

    def __init__(self, spatial: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(WIDTH, WIDTH, 3, stride=2, padding=1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))


def _upsample_add(coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """The pyramid's merge: ``coarse`` resized bilinearly (corners aligned, as in both codes) to ``lateral``, + it."""
    return F.interpolate(coarse, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


def block_spatial(index: int) -> int:
    """The feature-map side style block ``index`` reads at 256-px inputs (16, 32 or 64)."""
    return 16 if index < COARSE else 32 if index < MIDDLE else 64


class E4EEncoder(Encoder):
    """e4e's Encoder4Editing or pSp's GradualStyleEncoder over IR-SE50: 256-px faces -> W+ codes (B, n_styles, 512).

    Attribute names reproduce the checkpoints' ``encoder.*`` keys (``input_layer``, ``body``, ``styles``,
    ``latlayer1``, ``latlayer2``); ``latent_avg`` (n_styles, 512) is added to every code (zeros when the
    checkpoint's options do not start from the average).
    """

    resolution = INPUT_SIZE
    space = "w+"

    def __init__(self, n_styles: int, kind: str = "e4e") -> None:
        super().__init__()
        if kind not in ENCODER_TYPES:
            raise MagecError(f"encoder kind must be one of {', '.join(ENCODER_TYPES)}, not {kind!r}")
        if n_styles < 1:
            raise MagecError(f"{A_KIND[kind]} encoder needs at least one style block, not {n_styles}")
        self.kind = kind
        self.n_styles = n_styles
        self.spec = kind
        self.input_layer, self.body = ir_se50_trunk()
        self.styles = nn.ModuleList(GradualStyleBlock(block_spatial(i)) for i in range(n_styles))
        self.latlayer1 = nn.Conv2d(256, WIDTH, 1)
        self.latlayer2 = nn.Conv2d(128, WIDTH, 1)
        self.register_buffer("latent_avg", torch.zeros(n_styles, WIDTH), persistent=False)

    @property
    def code_shape(self) -> tuple[int, ...]:
        return (self.n_styles, WIDTH)

    def train(self, mode: bool = True) -> E4EEncoder:  # a published network: BatchNorm stays on its statistics
        return super().train(False)

    def _features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.input_layer(images)
        taps: dict[int, torch.Tensor] = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in (C1_UNIT, C2_UNIT, C3_UNIT):
                taps[i] = x
        return taps[C1_UNIT], taps[C2_UNIT], taps[C3_UNIT]

    def encode_resized(self, images: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self._features(images)
        levels: dict[str, torch.Tensor] = {"coarse": c3}

        def level(i: int) -> torch.Tensor:  # the pyramid, built only as far as the blocks need it
            if i >= COARSE and "middle" not in levels:
                levels["middle"] = _upsample_add(c3, self.latlayer1(c2))
            if i >= MIDDLE and "fine" not in levels:
                levels["fine"] = _upsample_add(levels["middle"], self.latlayer2(c1))
            return levels["coarse" if i < COARSE else "middle" if i < MIDDLE else "fine"]

        if self.kind == "e4e":
            w0 = self.styles[0](c3)
            codes = [w0] + [w0 + self.styles[i](level(i)) for i in range(1, self.n_styles)]
        else:
            codes = [self.styles[i](level(i)) for i in range(self.n_styles)]
        return torch.stack(codes, dim=1) + self.latent_avg


# ---- reading the training checkpoint ------------------------------------------------------------------------


@dataclass
class _Checkpoint:
    """What the checkpoint holds for the encoder: its kind, state (``encoder.`` stripped), styles and average."""

    kind: str | None  # None: the options do not say which of e4e / pSp
    state: dict[str, torch.Tensor]
    n_styles: int
    latent_avg: torch.Tensor | None  # (n_styles, 512), or None when the codes are not offsets from it


def _names(keys: list[str], limit: int = 3) -> str:
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _what(kind: str | None) -> str:
    return f"{A_KIND[kind]} checkpoint" if kind else "an e4e / pSp checkpoint"


def _looks_like_safetensors(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000


def _opts(ckpt: dict[str, Any]) -> dict[str, Any]:
    opts = ckpt.get("opts")
    if isinstance(opts, argparse.Namespace):
        return vars(opts)
    return opts if isinstance(opts, dict) else {}


def _encoder_state(ckpt: dict[str, Any], path: Path, kind: str | None) -> dict[str, torch.Tensor]:
    """The ``encoder.*`` tensors, prefix stripped; another layout is refused saying what it looks like."""
    what = _what(kind)
    if "g_ema" in ckpt:
        raise file_error(path, f"is a rosinality StyleGAN2 generator checkpoint (g_ema), not {what}")
    state = ckpt["state_dict"] if isinstance(ckpt.get("state_dict"), dict) else ckpt
    keys = [str(k) for k in state]
    encoder = {k[len(ENCODER_PREFIX) :]: v for k, v in state.items() if str(k).startswith(ENCODER_PREFIX)}
    if not encoder:
        if any(k.startswith("output_layer.") for k in keys) and any(k.startswith("body.") for k in keys):
            raise file_error(path, f"is an ArcFace IR-SE50 recognition network (model_ir_se50.pth), not {what}")
        if "input.input" in state or "mapping.w_avg" in state:
            raise file_error(path, f"is a StyleGAN2 generator state_dict, not {what}")
        raise file_error(path, f"no '{ENCODER_PREFIX}*' keys (found e.g. {_names(sorted(keys))}): not {what}")
    bad = [k for k, v in encoder.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise file_error(path, f"{ENCODER_PREFIX}{bad[0]} is not a tensor: not {what}")
    return encoder


def _kind_from_opts(opts: dict[str, Any], path: Path, kind: str | None) -> str | None:
    """The kind the training options name; a file of the other kind, or of another encoder type, is refused."""
    encoder_type = opts.get("encoder_type")
    if encoder_type is None:
        return kind
    named = next((k for k, t in ENCODER_TYPES.items() if t == encoder_type), None)
    if named is None:
        raise file_error(
            path,
            f"encoder_type {encoder_type!r} is not supported: magec reads Encoder4Editing (e4e:PATH) "
            "and GradualStyleEncoder (psp:PATH)",
        )
    if kind is not None and named != kind:
        raise file_error(
            path,
            f"is {A_KIND[named]} checkpoint (encoder_type {encoder_type}), not {kind}: give it as {named}:PATH",
        )
    return named


def _count_styles(state: dict[str, torch.Tensor], path: Path, kind: str | None) -> int:
    n = 0
    while f"styles.{n}.linear.weight" in state:
        n += 1
    if n == 0:
        raise file_error(path, f"no style blocks (encoder.styles.*): not the layout of {_what(kind)}")
    return n


def _latent_avg(ckpt: dict[str, Any], opts: dict[str, Any], n_styles: int, path: Path) -> torch.Tensor | None:
    """``latent_avg`` as (n_styles, 512), or None when the options say the codes are not offsets from it."""
    avg = ckpt.get("latent_avg")
    use = bool(opts.get("start_from_latent_avg", avg is not None))
    if not use:
        return None
    if not isinstance(avg, torch.Tensor):
        raise file_error(path, "the options start from latent_avg, but the file holds no latent_avg tensor")
    if avg.shape not in ((WIDTH,), (1, WIDTH), (n_styles, WIDTH)):
        raise file_error(
            path,
            f"latent_avg has shape {tuple(avg.shape)}, expected ({WIDTH},) or ({n_styles}, {WIDTH}) "
            f"for an encoder of {n_styles} style blocks",
        )
    check_finite({"latent_avg": avg}, path)
    return avg.float().reshape(-1, WIDTH).expand(n_styles, WIDTH).clone()


def _load(path: str | Path, kind: str | None) -> dict[str, Any]:
    """The file, opened with the safe loader (a safetensors file or folder refused by name first)."""
    path = Path(path)
    what = _what(kind)
    if path.is_dir():
        raise file_error(path, f"is a folder, not {what}")
    if path.is_file() and _looks_like_safetensors(path):
        raise file_error(
            path,
            f"is a safetensors file, not {what} (a torch.save'd .pt); magec's own encoders are given as --encoder PATH",
        )
    ckpt = read_checkpoint(path, f"{what} (e4e_ffhq_encode.pt layout)", allowed_globals=[argparse.Namespace])
    if not isinstance(ckpt, dict):
        raise file_error(path, f"expected a dict with 'state_dict' ({what}), found {type(ckpt).__name__}")
    return ckpt


def _parse(ckpt: dict[str, Any], path: Path, kind: str | None) -> _Checkpoint:
    """Check the layout up to the point where the network can be built."""
    state = _encoder_state(ckpt, path, kind)
    opts = _opts(ckpt)
    kind = _kind_from_opts(opts, path, kind)
    first = state.get("input_layer.0.weight")
    if isinstance(first, torch.Tensor) and first.dim() == 4 and first.shape[1] != 3:
        raise file_error(
            path, f"reads {first.shape[1]}-channel inputs (a pSp model for sketches or label maps?), not RGB photos"
        )
    n_styles = _count_styles(state, path, kind)
    return _Checkpoint(kind, state, n_styles, _latent_avg(ckpt, opts, n_styles, path))


def generator_resolution(n_styles: int) -> int | None:
    """The StyleGAN2 resolution whose W+ has ``n_styles`` codes (2 log2(R) - 2), or None if there is none."""
    if n_styles % 2:
        return None
    return 2 ** (n_styles // 2 + 1)


def _check_fits(checkpoint: _Checkpoint, path: Path, generator: Generator) -> None:
    """Refuse, in one line naming the file, a generator whose W+ shape the encoder's codes do not have."""
    space = generator.spaces.get("w+")
    name = KIND_NAMES.get(checkpoint.kind or "", "e4e / pSp")
    if space is None:
        a_kind = A_KIND.get(checkpoint.kind or "", "an e4e / pSp")
        raise file_error(
            path,
            f"{a_kind} encoder gives W+ codes of a StyleGAN2, but the generator {generator.spec} has no W+ "
            f"(its spaces: {', '.join(generator.spaces)})",
        )
    want = (checkpoint.n_styles, WIDTH)
    if tuple(space.shape) != want:
        res = generator_resolution(checkpoint.n_styles)
        made_for = f"a {res}-px StyleGAN2" if res else "a generator"
        raise file_error(
            path,
            f"made for {made_for} ({checkpoint.n_styles} W+ codes of {WIDTH}), but the generator {generator.spec} "
            f"({generator.resolution} px) takes W+ codes of shape {tuple(space.shape)}: "
            f"use the {name} model trained for this generator",
        )


def _build(checkpoint: _Checkpoint, path: Path, kind: str) -> E4EEncoder:
    """The network with the file's weights, loaded strictly (layout key by key, shapes, finite values)."""
    with torch.device("meta"):  # no time spent on a random initialisation every weight is about to replace
        encoder = E4EEncoder(checkpoint.n_styles, kind)
    encoder = encoder.to_empty(device="cpu")
    for buffer in encoder.buffers():
        buffer.zero_()  # BatchNorm step counters a file may lack, and the average before it is set
    layout = f"the {ENCODER_TYPES[kind]} layout of {KIND_NAMES[kind]} (IR-SE50, {checkpoint.n_styles} style blocks)"
    strict_load(encoder, checkpoint.state, path, layout)
    if checkpoint.latent_avg is not None:
        encoder.latent_avg.copy_(checkpoint.latent_avg)
    encoder.spec = f"{kind}:{path}"
    return encoder


def load_e4e_encoder(
    path: str | Path, generator: Generator, device: torch.device | str = "cpu", kind: str = "e4e"
) -> Encoder:
    """e4e's (``kind="e4e"``) or pSp's (``kind="psp"``) training checkpoint as an encoder for ``generator``.

    Read with ``weights_only``; its ``encoder.*`` keys are loaded strictly. Every refusal is one line naming the
    file: another layout, missing or unexpected keys, NaN / infinite weights, a checkpoint of the other kind, a
    generator without the W+ shape the encoder was made for, an unreadable or truncated file.
    """
    if kind not in ENCODER_TYPES:
        raise MagecError(f"encoder kind must be one of {', '.join(ENCODER_TYPES)}, not {kind!r}")
    path = Path(path)
    checkpoint = _parse(_load(path, kind), path, kind)
    _check_fits(checkpoint, path, generator)
    encoder = _build(checkpoint, path, kind)
    encoder.check_generator(generator)
    return encoder.to(device).requires_grad_(False).eval()


def describe_encoder_checkpoint(path: str | Path, generators: Sequence[Generator] = ()) -> str | None:
    """What an e4e / pSp checkpoint is (``magec doctor``), after the same checks as loading it.

    None when the file does not hold ``encoder.*`` weights at all (then it is not one of these); a file that
    does, but cannot be used (also: with one of ``generators``), raises the one-line error loading it would give.
    """
    path = Path(path)
    try:
        ckpt = _load(path, None)
    except MagecError:
        return None
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict) or not any(str(k).startswith(ENCODER_PREFIX) for k in state):
        return None
    checkpoint = _parse(ckpt, path, None)
    for generator in generators:
        _check_fits(checkpoint, path, generator)
    kind = checkpoint.kind or "e4e"
    _build(checkpoint, path, kind)
    res = generator_resolution(checkpoint.n_styles)
    target = f"a {res}-px StyleGAN2" if res else "a StyleGAN2"
    if checkpoint.kind:
        label = f"{KIND_NAMES[kind]} encoder ({ENCODER_TYPES[kind]}"
    else:
        label = "e4e or pSp encoder (type not recorded"
    avg = "latent_avg stored" if checkpoint.latent_avg is not None else "codes not offset from latent_avg"
    use = f"{kind}:PATH" if checkpoint.kind else "e4e:PATH or psp:PATH"
    fits = f"; fits the generator{'s' if len(generators) > 1 else ''} given with it" if generators else ""
    return (
        f"{label} over IR-SE50, {checkpoint.n_styles} W+ codes of {WIDTH}: for {target}; {avg}); "
        f"give it as --encoder {use}, not as a generator{fits}"
    )
