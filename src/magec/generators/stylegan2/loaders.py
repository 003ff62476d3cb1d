"""Load StyleGAN2 generators from rosinality ``.pt``, NVIDIA ``.pkl`` or magec ``.safetensors`` files.

``load_stylegan2(path)`` sniffs the format from the file's first bytes, not its name. Every path is
safe on untrusted files: ``torch.load(weights_only=True)``, the restricted unpickler, or safetensors.
Weights always load strictly; a mismatch names the missing or unexpected keys.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from magec.errors import MagecError, file_error
from magec.generators.stylegan2.config import StyleGAN2Config
from magec.generators.stylegan2.model import StyleGAN2Generator
from magec.generators.stylegan2.nvidia import nvidia_to_rosinality, read_nvidia_pickle
from magec.io.atomic import atomic_path
from magec.io.checkpoints import read_checkpoint, strict_load

#: safetensors metadata value identifying our format.
SAFETENSORS_FORMAT = "magec-stylegan2"
SAFETENSORS_VERSION = "1"
_TORCH_LEGACY_MAGIC = bytes.fromhex("8a0a6cfc9c46f9206aa85019")  # pickled 0x1950a86a20f9469cfc6c


def sniff_format(path: str | Path) -> str:
    """``"rosinality"`` (torch.save file), ``"nvidia"`` (plain pickle) or ``"safetensors"``, from the first bytes."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise file_error(path, f"cannot read ({exc.strerror or exc})") from None
    if head.startswith(b"PK\x03\x04") or head[2:14] == _TORCH_LEGACY_MAGIC:
        return "rosinality"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    if head[:1] == b"\x80":
        return "nvidia"
    raise file_error(path, "not a StyleGAN2 checkpoint (expected rosinality .pt, NVIDIA .pkl or magec .safetensors)")


def load_stylegan2(path: str | Path, device: torch.device | str = "cpu", **overrides) -> StyleGAN2Generator:
    """Load any supported StyleGAN2 checkpoint; ``overrides`` (size, channel_multiplier, n_mlp): rosinality only."""
    kind = sniff_format(path)
    if overrides and kind != "rosinality":
        raise file_error(
            path, f"architecture overrides {sorted(overrides)} apply only to rosinality checkpoints, this is {kind}"
        )
    if kind == "rosinality":
        model = load_rosinality(path, **overrides)
    elif kind == "nvidia":
        model = load_nvidia(path)
    else:
        model = load_safetensors(path)
    model.spec = f"stylegan2:{path}"
    return model.to(device)


def describe_checkpoint(path: str | Path) -> str:
    """What a generator checkpoint is, found by opening it exactly as ``load_stylegan2`` does (format sniffed from
    its bytes, layout checked strictly, nothing executed), e.g. ``StyleGAN2 256x256, style_dim 512 (NVIDIA pickle,
    average W stored)``; a file that cannot be used raises the one-line error ``--generator`` would give."""
    path = Path(path)
    if path.is_dir():
        raise file_error(path, "is a folder, not a checkpoint file")
    if not path.is_file():
        raise file_error(path, "no such file")
    if path.stat().st_size == 0:
        raise file_error(path, "empty file, not a checkpoint")
    kind = sniff_format(path)
    model = load_stylegan2(path)
    names = {"rosinality": "rosinality .pt", "nvidia": "NVIDIA pickle", "safetensors": "magec safetensors"}
    avg = "average W stored" if model.w_avg_source == "checkpoint" else "no average W: computed from samples on use"
    c = model.config
    size = f"{c.resolution}x{c.resolution}"
    return f"StyleGAN2 {size}, style_dim {c.style_dim}, {c.n_mlp}-layer mapping ({names[kind]}, {avg})"


def load_state_strict(model: StyleGAN2Generator, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``load_state_dict(strict=True)`` with a one-line error that names the offending keys."""
    strict_load(model, state, path, f"the StyleGAN2 {model.resolution}x{model.resolution} architecture")


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def infer_rosinality_config(
    state: dict[str, torch.Tensor],
    path: str | Path,
    size: int | None = None,
    channel_multiplier: int | None = None,
    n_mlp: int | None = None,
    lr_mlp: float = 0.01,
) -> StyleGAN2Config:
    """Architecture of a rosinality ``g_ema`` from its key names and shapes; explicit values take precedence."""
    for key in ("style.1.weight", "input.input"):
        if key not in state:
            raise file_error(path, f"missing key {key!r}: not a rosinality StyleGAN2 g_ema state_dict")
    inferred_mlp = 0
    while f"style.{inferred_mlp + 1}.weight" in state:
        inferred_mlp += 1
    n_rgbs = 0
    while f"to_rgbs.{n_rgbs}.conv.weight" in state:
        n_rgbs += 1
    channels: tuple[int, ...] = ()
    if channel_multiplier is None and size is None:
        shapes = [state["input.input"].shape[1]] + [
            state[f"convs.{2 * k}.conv.weight"].shape[1] for k in range(n_rgbs) if f"convs.{2 * k}.conv.weight" in state
        ]
        channels = tuple(int(c) for c in shapes)
    try:
        return StyleGAN2Config(
            resolution=size or 4 * 2**n_rgbs,
            style_dim=int(state["style.1.weight"].shape[1]),
            n_mlp=n_mlp or inferred_mlp,
            channel_multiplier=channel_multiplier or 2,
            channels=channels if len(channels) == n_rgbs + 1 else (),
            lr_mlp=lr_mlp,
        )
    except MagecError as exc:
        raise file_error(path, str(exc)) from None


def load_rosinality(
    path: str | Path, size: int | None = None, channel_multiplier: int | None = None, n_mlp: int | None = None
) -> StyleGAN2Generator:
    """A rosinality checkpoint: ``{"g_ema": state_dict, "latent_avg": w_avg, ...}`` or a bare g_ema state_dict."""
    path = Path(path)
    ckpt = read_checkpoint(
        path, "a rosinality StyleGAN2 checkpoint", allowed_globals=[argparse.Namespace]
    )  # training checkpoints keep their args
    if not isinstance(ckpt, dict):
        raise file_error(path, f"expected a dict with key 'g_ema' (rosinality layout), found {type(ckpt).__name__}")
    state = ckpt["g_ema"] if "g_ema" in ckpt else ckpt if "input.input" in ckpt else None
    if not isinstance(state, dict):
        raise file_error(
            path, f"expected a dict with key 'g_ema' (rosinality layout), found keys {_names(sorted(map(str, ckpt)))}"
        )
    config = infer_rosinality_config(state, path, size, channel_multiplier, n_mlp)
    model = StyleGAN2Generator(config)
    load_state_strict(model, state, path)
    latent_avg = ckpt.get("latent_avg") if "g_ema" in ckpt else None
    if isinstance(latent_avg, torch.Tensor):
        if latent_avg.numel() != config.style_dim:
            raise file_error(path, f"latent_avg has {latent_avg.numel()} values, expected {config.style_dim}")
        model.set_w_avg(latent_avg.float())
    return model


def load_nvidia(path: str | Path) -> StyleGAN2Generator:
    """``G_ema`` of an NVIDIA stylegan2-ada-pytorch / stylegan3 pickle, read without executing its code."""
    config, state, w_avg = nvidia_to_rosinality(read_nvidia_pickle(path), path)
    model = StyleGAN2Generator(config)
    load_state_strict(model, state, path)
    if w_avg is not None:
        model.set_w_avg(w_avg.float())
    return model


def save_safetensors(model: StyleGAN2Generator, path: str | Path) -> None:
    """Write our format atomically: rosinality-named tensors, ``latent_avg`` when known, architecture JSON."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().float().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if model.w_avg_source == "checkpoint":
        tensors["latent_avg"] = model.w_avg.detach().cpu().clone()
    metadata = {
        "format": SAFETENSORS_FORMAT,
        "format_version": SAFETENSORS_VERSION,
        "architecture": model.config.to_json(),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_safetensors(path: str | Path) -> StyleGAN2Generator:
    """A file written by ``save_safetensors``."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # corrupted header or data
        raise file_error(
            path, f"not a readable safetensors file ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]})"
        ) from None
    if metadata.get("format") != SAFETENSORS_FORMAT:
        raise file_error(
            path, f"safetensors metadata lacks format={SAFETENSORS_FORMAT!r} (not written by magec convert)"
        )
    if metadata.get("format_version") != SAFETENSORS_VERSION:
        raise file_error(
            path,
            f"unsupported {SAFETENSORS_FORMAT} format_version {metadata.get('format_version')!r} "
            f"(expected {SAFETENSORS_VERSION})",
        )
    try:
        config = StyleGAN2Config.from_json(metadata.get("architecture", ""))
    except (ValueError, TypeError, json.JSONDecodeError, MagecError) as exc:
        raise file_error(path, f"bad architecture metadata ({exc})") from None
    model = StyleGAN2Generator(config)
    latent_avg = tensors.pop("latent_avg", None)
    load_state_strict(model, tensors, path)
    if latent_avg is not None:
        model.set_w_avg(latent_avg)
    return model


def convert_checkpoint(src: str | Path, dst: str | Path, **overrides) -> StyleGAN2Generator:
    """Read any supported checkpoint and write it as magec safetensors (``magec convert``)."""
    model = load_stylegan2(src, "cpu", **overrides)
    save_safetensors(model, dst)
    return model
