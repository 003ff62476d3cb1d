"""Test helpers: faithful fakes of NVIDIA's StyleGAN2 pickles and an independent NVIDIA-semantics forward pass.

The fake pickle has the structure stylegan2-ada-pytorch's ``torch_utils.persistence`` produces: every
network module is pickled as ``_reconstruct_persistent_obj(meta)`` with ``meta = {type, version,
module_src, class_name, state}`` where ``state`` is the module's ``__dict__``. The embedded
``module_src`` here is hostile (it writes a marker file): a loader that executed it would be caught.

``nvidia_forward`` re-implements NVIDIA's generator math (fused grouped modulated convolution, no
weight gain on demodulated convs, transposed conv + FIR with conv2d_resample's padding rules, const
noise times noise_strength, bias_act with clamp) on NVIDIA-named tensors, independently of magec.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------- NVIDIA-named tensors


def nvidia_tensors_from(model) -> dict[str, torch.Tensor]:
    """The same weights as a magec/rosinality StyleGAN2, under NVIDIA's names and layouts."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = model.config
    res_list = [2**i for i in range(2, cfg.log_size + 1)]
    nv: dict[str, torch.Tensor] = {}
    for i in range(cfg.n_mlp):
        nv[f"mapping.fc{i}.weight"] = sd[f"style.{i + 1}.weight"]
        nv[f"mapping.fc{i}.bias"] = sd[f"style.{i + 1}.bias"]
    nv["mapping.w_avg"] = torch.randn(cfg.style_dim) * 0.1
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    fir = k[:, None] * k[None, :] / 64.0  # setup_filter([1,3,3,1]): normalised 4x4, no gain

    def layer(dst: str, src: str, noise_idx: int) -> None:
        nv[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        nv[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        nv[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        nv[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"][0]
        nv[f"{dst}.noise_const"] = sd[f"noises.noise_{noise_idx}"][0, 0]
        nv[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        nv[f"{dst}.resample_filter"] = fir.clone()

    def torgb(dst: str, src: str) -> None:
        nv[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        nv[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        nv[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        nv[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(3)

    nv["synthesis.b4.const"] = sd["input.input"][0]
    nv["synthesis.b4.resample_filter"] = fir.clone()
    layer("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4.torgb", "to_rgb1")
    for j, res in enumerate(res_list[1:]):
        nv[f"synthesis.b{res}.resample_filter"] = fir.clone()
        layer(f"synthesis.b{res}.conv0", f"convs.{2 * j}", 2 * j + 1)
        layer(f"synthesis.b{res}.conv1", f"convs.{2 * j + 1}", 2 * j + 2)
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{j}")
    return nv


# ----------------------------------------------------------------------------- NVIDIA semantics


def _upfirdn(x, f, up=1, pad=(0, 0, 0, 0), gain=1.0):
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    px0, px1, py0, py1 = pad
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    f = (f * gain ** (f.ndim / 2)).flip([0, 1])
    return F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)


def _fc(x, w, b, lr=1.0, act=False):
    x = x @ (w * (lr / math.sqrt(w.shape[1]))).t() + b * lr
    return F.leaky_relu(x, 0.2) * math.sqrt(2) if act else x


def _modconv(x, weight, styles, demodulate, up, padding, f):
    bsz = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    w = weight[None] * styles.reshape(bsz, 1, -1, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(bsz, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_c, kh, kw)
    if up == 1:
        out = F.conv2d(x, w, padding=padding, groups=bsz)
    else:  # conv2d_resample's transposed-convolution path, flip_weight=False -> not flipped again
        fw = f.shape[-1]
        p0 = padding + (fw + up - 1) // 2 - (kw - 1)
        p1 = padding + (fw - up) // 2 - (kw - up)
        pt = max(min(-p0, -p1), 0)
        w = w.reshape(bsz, out_c, in_c, kh, kw).transpose(1, 2).reshape(bsz * in_c, out_c, kh, kw)
        out = F.conv_transpose2d(x, w, stride=up, padding=pt, groups=bsz)
        out = _upfirdn(out, f, pad=(p0 + pt, p1 + pt, p0 + pt, p1 + pt), gain=up**2)
    return out.reshape(bsz, -1, *out.shape[2:])


def nvidia_mapping(nv, z, lr=0.01):
    x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
    i = 0
    while f"mapping.fc{i}.weight" in nv:
        x = _fc(x, nv[f"mapping.fc{i}.weight"], nv[f"mapping.fc{i}.bias"], lr, act=True)
        i += 1
    return x


def nvidia_forward(nv, ws, conv_clamp=None):
    """NVIDIA's SynthesisNetwork with noise_mode='const', on W+ codes (B, num_ws, D)."""

    def layer(name, x, w, up):
        styles = _fc(w, nv[f"{name}.affine.weight"], nv[f"{name}.affine.bias"])
        x = _modconv(x, nv[f"{name}.weight"], styles, True, up, 1, nv[f"{name}.resample_filter"])
        x = x + nv[f"{name}.noise_const"] * nv[f"{name}.noise_strength"]
        x = F.leaky_relu(x + nv[f"{name}.bias"].reshape(1, -1, 1, 1), 0.2) * math.sqrt(2)
        return x.clamp(-conv_clamp, conv_clamp) if conv_clamp is not None else x

    def torgb(name, x, w):
        weight = nv[f"{name}.weight"]
        styles = _fc(w, nv[f"{name}.affine.weight"], nv[f"{name}.affine.bias"]) / math.sqrt(weight.shape[1])
        y = _modconv(x, weight, styles, False, 1, 0, None) + nv[f"{name}.bias"].reshape(1, -1, 1, 1)
        return y.clamp(-conv_clamp, conv_clamp) if conv_clamp is not None else y

    res_list = sorted(int(k.split(".")[1][1:]) for k in nv if k.endswith(".const") or k.endswith("conv0.weight"))
    x = nv["synthesis.b4.const"][None].repeat(ws.shape[0], 1, 1, 1)
    x = layer("synthesis.b4.conv1", x, ws[:, 0], 1)
    img = torgb("synthesis.b4.torgb", x, ws[:, 1])
    idx = 1
    for res in res_list[1:]:
        b = f"synthesis.b{res}"
        x = layer(f"{b}.conv0", x, ws[:, idx], 2)
        x = layer(f"{b}.conv1", x, ws[:, idx + 1], 1)
        f = nv[f"{b}.resample_filter"]
        img = _upfirdn(img, f, up=2, pad=((f.shape[0] + 1) // 2, (f.shape[0] - 2) // 2) * 2, gain=4) + torgb(
            f"{b}.torgb", x, ws[:, idx + 2]
        )
        idx += 2
    return img


# ----------------------------------------------------------------------------- the pickle

HOSTILE_SRC = "import pathlib\npathlib.Path({marker!r}).write_text('module_src was executed')\n"


@contextlib.contextmanager
def fake_nvidia_modules(marker: Path):
    """Temporarily register ``torch_utils.persistence`` and ``dnnlib.util`` so pickle can name them.

    Their functions write ``marker`` if ever called: the loader under test must use its own stand-ins.
    """
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - must never run
        marker.write_text("real reconstruct called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    util.EasyDict = EasyDict
    names = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": persistence,
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": util,
    }
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(names)
    try:
        yield persistence, util
    finally:
        for n, old in saved.items():
            if old is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = old


def build_fake_pickle(nv: dict[str, torch.Tensor], cfg, marker: Path, conv_clamp=None, protocol: int = 3) -> bytes:
    """Pickle bytes shaped like a stylegan2-ada-pytorch snapshot (G, D, G_ema, augment_pipe, training_set_kwargs)."""
    with fake_nvidia_modules(marker) as (persistence, util):
        src = HOSTILE_SRC.format(marker=str(marker))

        class Persistent(nn.Module):
            def __init__(self, class_name, **attrs):
                super().__init__()
                self._class_name = class_name
                for key, value in attrs.items():
                    setattr(self, key, value)

            def __reduce__(self):
                state = dict(self.__dict__)
                state.pop("_class_name")
                meta = dict(type="class", version=6, module_src=src, class_name=self._class_name, state=state)
                return persistence._reconstruct_persistent_obj, (meta,)

        def module_at(root, dotted, make):
            node = root
            for part in dotted.split("."):
                if part not in node._modules:
                    node.add_module(part, make(part))
                node = node._modules[part]
            return node

        def class_for(part):
            if part == "mapping":
                return Persistent("MappingNetwork", num_ws=cfg.n_latent, w_avg_beta=0.995)
            if part == "synthesis":
                return Persistent("SynthesisNetwork", img_resolution=cfg.resolution)
            if part.startswith("fc") or part == "affine":
                lr = cfg.lr_mlp if part.startswith("fc") else 1.0
                return Persistent(
                    "FullyConnectedLayer", activation="lrelu" if part.startswith("fc") else "linear", bias_gain=lr
                )
            if part.startswith("b"):
                return Persistent("SynthesisBlock", architecture="skip", resolution=int(part[1:]), use_fp16=False)
            if part == "torgb":
                return Persistent("ToRGBLayer", conv_clamp=conv_clamp)
            return Persistent(
                "SynthesisLayer", conv_clamp=conv_clamp, activation="lrelu", up=2 if part == "conv0" else 1
            )

        mapping_kwargs = util.EasyDict(num_layers=cfg.n_mlp, lr_multiplier=cfg.lr_mlp)
        g = Persistent(
            "Generator",
            z_dim=cfg.style_dim,
            c_dim=0,
            w_dim=cfg.style_dim,
            img_resolution=cfg.resolution,
            _init_args=(),
            _init_kwargs=util.EasyDict(z_dim=cfg.style_dim, c_dim=0, mapping_kwargs=mapping_kwargs),
        )
        for name, value in nv.items():
            owner, _, leaf = name.rpartition(".")
            module = module_at(g, owner, class_for)
            if leaf in ("resample_filter", "noise_const", "w_avg"):
                module.register_buffer(leaf, value.clone())
            else:
                module.register_parameter(leaf, nn.Parameter(value.clone()))
        d = Persistent("Discriminator", _init_kwargs=util.EasyDict(c_dim=0))
        d.register_parameter("w", nn.Parameter(torch.randn(4, 4)))
        snapshot = dict(
            G=g,
            D=d,
            G_ema=g,
            augment_pipe=None,
            training_set_kwargs=util.EasyDict(path="ffhq.zip", use_labels=False, xflip=True, resolution=cfg.resolution),
        )
        return pickle.dumps(snapshot, protocol=protocol)


class _Explode:
    """An object whose unpickling would call ``os.system`` (the classic pickle exploit)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


def malicious_pickle_bytes(marker: Path) -> bytes:
    return pickle.dumps({"G_ema": _Explode(f"touch {marker}")})
