"""Bring your own describer F: an ONNX file or any torch module, plus a layout JSON that says what it outputs.

Spec: ``onnx:MODEL.onnx:LAYOUT.json``. The ONNX graph is run by ``onnx_graph`` (differentiable, allow-listed
ops); a torch module is used as it is (``describer_from_module``). The layout file::

    {
      "format": "magec-describer-layout", "version": 1,
      "input": {"size": [32, 32], "crop": [0.1, 0.2, 0.9, 1.0], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
      "output": "logits",
      "heads": [
        {"name": "bright", "kind": "binary"},
        {"name": "gender", "kind": "categorical", "classes": ["female", "male"], "attribute": "male",
         "positive_class": "male"},
        {"name": "age", "kind": "continuous", "class_values": [5, 15, 25, 35, 45, 55, 65]}
      ]
    }

- ``input.size`` is [height, width] of the model's input; ``crop`` is the box [left, top, right, bottom] of the
  generator image it sees, as fractions of the width and height (cut and resized differentiably, antialiased);
  the crop's pixels are in [0, 1] and then normalised as ``(x - mean) / std`` per RGB channel.
- ``output``: whether the model returns ``logits`` (magec applies a sigmoid per binary head, a softmax per
  categorical/continuous head) or already ``probabilities``.
- ``heads``, in the order of the model's output columns: ``binary`` (one column, an attribute of the head's name
  or ``attribute``), ``categorical`` (one column per class; with ``positive_class`` it gives a binary attribute,
  P(that class)), ``continuous`` (one column per value of ``class_values``, increasing; the attribute is the
  expected value, as for dlib's age). A regression output cannot be a descriptor of probabilities: bin it.

The file is checked strictly (unknown keys, types, NaN, names, the model's output width) with one-line errors.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from magec.describers.base import Describer
from magec.describers.layout_file import (
    LAYOUT_FORMAT,
    LAYOUT_VERSION,
    MAX_LAYOUT_BYTES,
    ModelLayout,
    parse_layout,
    read_layout,
)
from magec.errors import file_error
from magec.io.hashing import sha256_file

__all__ = [
    "LAYOUT_FORMAT",
    "LAYOUT_VERSION",
    "MAX_LAYOUT_BYTES",
    "ModelLayout",
    "TorchModuleDescriber",
    "crop_box",
    "describer_from_module",
    "load_onnx_describer",
    "parse_layout",
    "read_layout",
]


def crop_box(images: torch.Tensor, box: tuple[float, float, float, float], size: tuple[int, int]) -> torch.Tensor:
    """Cut ``box`` (left, top, right, bottom fractions) out of NCHW images and resize to ``size``, differentiably.

    Resampled bilinearly at about the box's own pixel size first, then resized with an antialiased filter, so
    shrinking never skips pixels (the same scheme as ``faces.chips.crop_chip``).
    """
    b, c, h, w = images.shape
    left, top, right, bottom = box
    theta = torch.tensor(
        [[right - left, 0.0, left + right - 1.0], [0.0, bottom - top, top + bottom - 1.0]],
        dtype=images.dtype,
        device=images.device,
    )
    crop_h = max(size[0], min(256, int(round((bottom - top) * h))))
    crop_w = max(size[1], min(256, int(round((right - left) * w))))
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, c, crop_h, crop_w], align_corners=False)
    crop = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if (crop_h, crop_w) == tuple(size):
        return crop
    return F.interpolate(crop, size=size, mode="bilinear", antialias=True, align_corners=False)


class TorchModuleDescriber(Describer):
    """F = a frozen torch module (images cropped and normalised per ``ModelLayout``) read through its layout.

    ``forward`` takes images in [-1, 1] (NCHW, any resolution) and returns probabilities in ``self.layout``.
    ``files`` holds the SHA-256 of the files the describer was read from (recorded in packs).
    """

    def __init__(self, module: nn.Module, layout: ModelLayout, spec: str = "", source: str = "module") -> None:
        super().__init__()
        self.net = module
        self.model_layout = layout
        self.layout = layout.descriptor
        self.spec = spec or f"module:{type(module).__name__}"
        self.source = source
        self.files: dict[str, str] = {}
        self.register_buffer("mean", torch.tensor(layout.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(layout.std).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()
        weights = [*module.parameters(), *module.buffers()]
        if weights:  # follow the module's device (a user's module may already sit on a GPU)
            self.to(weights[0].device)
        self._check_width()

    def _check_width(self) -> None:
        """Run one dummy image so a model whose output does not match the layout fails now, with its name."""
        try:
            with torch.no_grad():
                out = self.net(torch.zeros(1, 3, *self.model_layout.size, device=self.mean.device))
        except RuntimeError as exc:
            raise file_error(
                self.source,
                f"does not accept {self.model_layout.size[0]}x{self.model_layout.size[1]} RGB inputs "
                f"({str(exc).splitlines()[0][:200]})",
            ) from None
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != self.layout.dim:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise file_error(
                self.source,
                f"model output has shape {shape}, the layout's heads need (batch, {self.layout.dim}) columns",
            )

    def net_input(self, images: torch.Tensor) -> torch.Tensor:
        """The cropped, resized and normalised batch the module sees."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.spec}: expected RGB images (B, 3, H, W), got {tuple(images.shape)}")
        crop = crop_box(images, self.model_layout.crop, self.model_layout.size)
        return ((crop + 1.0) * 0.5 - self.mean.to(crop)) / self.std.to(crop)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.net(self.net_input(images))
        if self.model_layout.outputs_are_logits:
            return self.layout.probabilities(out)
        return out

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Activation maps (4-D) of the network, what ``--perceptual describer-features`` compares.

        An ONNX graph gives its Relu/LeakyRelu outputs; a torch module the outputs of its activation modules
        (or, if it has none, of its 2-D convolutions), captured with forward hooks during one pass.
        """
        from magec.describers.onnx_graph import OnnxGraphModule

        x = self.net_input(images)
        if isinstance(self.net, OnnxGraphModule):
            if not self.net.activation_values:
                return []
            _, maps = self.net(x, capture=self.net.activation_values)
            return [m for m in maps.values() if m.dim() == 4]
        leaves = [m for m in self.net.modules() if isinstance(m, _ACTIVATIONS)]
        leaves = leaves or [m for m in self.net.modules() if isinstance(m, nn.Conv2d)]
        captured: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: captured.append(out)) for m in leaves]
        try:
            self.net(x)
        finally:
            for h in hooks:
                h.remove()
        return [m for m in captured if isinstance(m, torch.Tensor) and m.dim() == 4]


_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.PReLU)


def describer_from_module(
    module: nn.Module, layout: ModelLayout | dict | str | Path, spec: str = ""
) -> TorchModuleDescriber:
    """Wrap any torch module (images in, one row of outputs per image out) as a describer F.

    ``layout`` is a ``ModelLayout``, a layout dict or the path of a layout JSON file (see the module docstring).
    A pack prepared with such a describer records ``spec`` (default ``module:<class name>``); reload it with the
    same module through ``magec.pipeline.assemble_pipeline``.
    """
    if isinstance(layout, (str, Path)):
        layout = read_layout(layout)
    elif isinstance(layout, dict):
        layout = parse_layout(layout)
    return TorchModuleDescriber(module, layout, spec=spec)


def load_onnx_describer(arg: str) -> TorchModuleDescriber:
    """``onnx:MODEL.onnx:LAYOUT.json`` -> the describer; the spec keeps absolute paths, ``files`` their SHA-256."""
    from magec.describers.onnx_files import check_onnx_spec
    from magec.describers.onnx_graph import OnnxGraphModule

    checked = check_onnx_spec(arg)  # the files, the layout and the graph's ops and sizes, before any weight is read
    model_path, layout_path = checked.model_path, checked.layout_path
    net = OnnxGraphModule(model_path, model=checked.model)
    spec = f"onnx:{model_path.resolve()}:{layout_path.resolve()}"
    describer = TorchModuleDescriber(net, checked.layout, spec=spec, source=str(model_path))
    describer.files = {"model": sha256_file(model_path), "layout": sha256_file(layout_path)}
    return describer
