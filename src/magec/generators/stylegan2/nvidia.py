"""Read NVIDIA's StyleGAN2 pickles (stylegan2-ada-pytorch, stylegan3) without running their code.

Those files pickle each network module as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``
where ``meta`` holds the module's Python source (``module_src``), its ``class_name`` and its ``state``
(the module's ``__dict__``: ``_parameters``, ``_buffers``, ``_modules``, constructor arguments...).
Their loader ``exec``s the source. We map that function onto ``PersistentStub``, which keeps the state
and ignores the source, then rename the ``G_ema`` tensors onto our rosinality-style layout.

Layout differences handled here (both codes compute the same function otherwise):
- per-layer tensors: ``weight`` (out, in, k, k) -> (1, out, in, k, k); ToRGB bias (3,) -> (1, 3, 1, 1);
  ``const`` (C, 4, 4) -> (1, C, 4, 4); ``noise_strength`` () -> (1,); ``noise_const`` (r, r) -> (1, 1, r, r);
- the synthesis convolutions carry no 1/sqrt(fan_in) gain in NVIDIA's code: demodulation cancels it
  (up to the 1e-8 epsilon), so the raw weights transfer unchanged;
- the up-sampling convolution is a transposed convolution without weight flip followed by the FIR
  filter with padding (1, 1) in both codes; NVIDIA's ``resample_filter`` is normalised without the
  up-sampling gain, ours (rosinality's) carries the factor 4;
- ``conv_clamp`` (256 in stylegan2-ada trainings) clamps activations; it is kept in the config.
FP16 blocks (``num_fp16_res``) are run in FP32 here.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from magec.errors import MagecError, file_error
from magec.generators.stylegan2.config import StyleGAN2Config
from magec.generators.stylegan2.upfirdn import make_fir_kernel
from magec.io.safe_unpickle import RefusedPickle, inert_factory, restricted_load


@dataclass
class PersistentStub:
    """Inert stand-in for one of NVIDIA's persistent modules: its class name and pickled ``__dict__`` only."""

    class_name: str
    version: int
    state: dict[str, Any] = field(default_factory=dict)

    def child(self, name: str) -> PersistentStub | None:
        modules = self.state.get("_modules") or {}
        found = modules.get(name)
        return found if isinstance(found, PersistentStub) else None

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this module and its children, named as ``state_dict`` names them."""
        out: dict[str, torch.Tensor] = {}
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if isinstance(value, torch.Tensor) and name not in skip:
                    out[prefix + name] = value.detach()
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentStub):
                out.update(child.tensors(f"{prefix}{name}."))
        return out


def _reconstruct_stub(meta: dict[str, Any]) -> PersistentStub:
    """Replacement for ``_reconstruct_persistent_obj``: never looks at ``meta['module_src']``."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise ValueError("persistent object without a class state")
    return PersistentStub(
        class_name=str(meta.get("class_name")), version=int(meta.get("version", 0)), state=dict(meta["state"])
    )


class EasyDictStub(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access): kept as a plain dict."""


#: What NVIDIA pickles may name beyond the torch/numpy basics.
NVIDIA_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): inert_factory(_reconstruct_stub),
    ("dnnlib.util", "EasyDict"): EasyDictStub,
}


def read_nvidia_pickle(path: str | Path) -> PersistentStub:
    """The ``G_ema`` network of an NVIDIA pickle, as an inert stub tree."""
    try:
        data = restricted_load(path, NVIDIA_ALLOWED)
    except RefusedPickle as exc:
        if "dnnlib.tflib" in str(exc):
            raise RefusedPickle(
                f"{exc} (a TensorFlow StyleGAN2 pickle: convert it first with stylegan2-ada-pytorch's legacy.py "
                "or rosinality's convert_weight.py)"
            ) from None
        raise
    g = data.get("G_ema") if isinstance(data, dict) else None
    if not isinstance(g, PersistentStub):
        keys = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise file_error(
            path,
            f"expected a dict with a persistent 'G_ema' network (stylegan2-ada-pytorch / stylegan3 .pkl), found {keys}",
        )
    return g


def _need(tensors: dict[str, torch.Tensor], key: str, path: str | Path) -> torch.Tensor:
    if key not in tensors:
        raise file_error(path, f"G_ema is missing key {key!r} (not a StyleGAN2 generator?)")
    return tensors[key]


def nvidia_to_rosinality(
    g: PersistentStub, path: str | Path
) -> tuple[StyleGAN2Config, dict[str, torch.Tensor], torch.Tensor | None]:
    """Architecture, rosinality-named state_dict and stored w_avg of an NVIDIA ``G_ema``."""
    t = g.tensors()
    synthesis, mapping = g.child("synthesis"), g.child("mapping")
    if synthesis is None or mapping is None:
        raise file_error(path, "G_ema has no 'synthesis'/'mapping' networks (not a StyleGAN2 generator)")
    if synthesis.child("input") is not None or any(k.startswith("synthesis.L") for k in t):
        raise file_error(path, "this is a StyleGAN3 (alias-free) generator; only StyleGAN2 networks are supported")
    if any(k.startswith("mapping.embed.") for k in t):
        raise file_error(path, "conditional generators (c_dim > 0) are not supported")

    resolutions = sorted(int(name[1:]) for name in (synthesis.state.get("_modules") or {}) if name[1:].isdigit())
    if not resolutions or resolutions[0] != 4 or resolutions != [4 * 2**i for i in range(len(resolutions))]:
        raise file_error(path, f"unexpected synthesis blocks {resolutions} (expected b4, b8, ...)")
    for res in resolutions:
        block = synthesis.child(f"b{res}")
        architecture = block.state.get("architecture", "skip") if block else "skip"
        if architecture != "skip":
            raise file_error(path, f"synthesis architecture {architecture!r} is not supported (StyleGAN2 uses 'skip')")
    rgb = _need(t, f"synthesis.b{resolutions[-1]}.torgb.weight", path)
    if rgb.shape[0] != 3:
        raise file_error(path, f"generator has {rgb.shape[0]} image channels; only RGB is supported")

    n_mlp = 0
    while f"mapping.fc{n_mlp}.weight" in t:
        n_mlp += 1
    fc0 = _need(t, "mapping.fc0.weight", path)
    style_dim = fc0.shape[0]
    if fc0.shape[1] != style_dim:
        raise file_error(path, f"z_dim {fc0.shape[1]} != w_dim {style_dim} is not supported")
    fc0_state = mapping.child("fc0").state
    lr_mlp = float(fc0_state.get("bias_gain", (mapping.state.get("_init_kwargs") or {}).get("lr_multiplier", 0.01)))
    for name, stub in (
        ("mapping.fc0", mapping.child("fc0")),
        ("synthesis.b4.conv1", synthesis.child("b4").child("conv1")),
    ):
        act = stub.state.get("activation", "lrelu") if stub else "lrelu"
        if act != "lrelu":
            raise file_error(path, f"{name} uses activation {act!r}; StyleGAN2 uses 'lrelu'")
    conv_clamp = synthesis.child("b4").child("conv1").state.get("conv_clamp")

    channels = [_need(t, "synthesis.b4.const", path).shape[0]]
    channels += [_need(t, f"synthesis.b{r}.conv0.weight", path).shape[0] for r in resolutions[1:]]
    blur_taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    fir = t.get("synthesis.b8.resample_filter")
    if fir is not None:
        fir2d = fir if fir.ndim == 2 else fir[:, None] * fir[None, :]
        taps = fir2d.sum(1)
        if not torch.allclose(taps[:, None] * taps[None, :] / taps.sum() ** 2, fir2d / fir2d.sum(), atol=1e-6):
            raise file_error(path, "resample_filter is not separable; not supported")
        blur_taps = tuple(float(x) for x in taps / taps.sum())

    try:
        config = StyleGAN2Config(
            resolution=resolutions[-1],
            style_dim=style_dim,
            n_mlp=n_mlp,
            channels=tuple(channels),
            lr_mlp=lr_mlp,
            blur_kernel=blur_taps,
            conv_clamp=None if conv_clamp is None else float(conv_clamp),
        )
    except MagecError as exc:
        raise file_error(path, str(exc)) from None

    fir_up = make_fir_kernel(blur_taps, gain=4.0)
    out: dict[str, torch.Tensor] = collections.OrderedDict()
    for i in range(n_mlp):
        out[f"style.{i + 1}.weight"] = t[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = _need(t, f"mapping.fc{i}.bias", path)
    out["input.input"] = t["synthesis.b4.const"][None]
    noises = [_layer(out, "conv1", "synthesis.b4.conv1", t, path, None, 4)]
    _torgb(out, "to_rgb1", "synthesis.b4.torgb", t, path, None)
    for k, res in enumerate(resolutions[1:]):
        noises.append(_layer(out, f"convs.{2 * k}", f"synthesis.b{res}.conv0", t, path, fir_up, res))
        noises.append(_layer(out, f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", t, path, None, res))
        _torgb(out, f"to_rgbs.{k}", f"synthesis.b{res}.torgb", t, path, fir_up)
    for i, noise in enumerate(noises):
        out[f"noises.noise_{i}"] = noise
    return config, out, t.get("mapping.w_avg")


def _layer(
    out: dict, dst: str, src: str, t: dict, path: str | Path, fir: torch.Tensor | None, res: int
) -> torch.Tensor:
    """Copy one SynthesisLayer; returns its constant noise map (zeros when the layer has no noise input)."""
    weight = _need(t, f"{src}.weight", path)
    out[f"{dst}.conv.weight"] = weight[None]
    if fir is not None:
        out[f"{dst}.conv.blur.kernel"] = fir
    out[f"{dst}.conv.modulation.weight"] = _need(t, f"{src}.affine.weight", path)
    out[f"{dst}.conv.modulation.bias"] = _need(t, f"{src}.affine.bias", path)
    strength = t.get(f"{src}.noise_strength")
    out[f"{dst}.noise.weight"] = torch.zeros(1) if strength is None else strength.reshape(1)
    out[f"{dst}.activate.bias"] = _need(t, f"{src}.bias", path)
    noise = t.get(f"{src}.noise_const")
    return torch.zeros(1, 1, res, res) if noise is None else noise.reshape(1, 1, res, res)


def _torgb(out: dict, dst: str, src: str, t: dict, path: str | Path, fir: torch.Tensor | None) -> None:
    if fir is not None:
        out[f"{dst}.upsample.kernel"] = fir
    out[f"{dst}.conv.weight"] = _need(t, f"{src}.weight", path)[None]
    out[f"{dst}.conv.modulation.weight"] = _need(t, f"{src}.affine.weight", path)
    out[f"{dst}.conv.modulation.bias"] = _need(t, f"{src}.affine.bias", path)
    out[f"{dst}.bias"] = _need(t, f"{src}.bias", path).reshape(1, 3, 1, 1)
