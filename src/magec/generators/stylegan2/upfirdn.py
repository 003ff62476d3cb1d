"""Up-sample, FIR-filter, down-sample (``upfirdn2d``) in plain PyTorch.

StyleGAN2 anti-aliases every resolution change with a small separable FIR filter ([1, 3, 3, 1] by
default). The official code ships a CUDA kernel for this; here it is written with ordinary tensor ops
so it runs on any device and is differentiable by autograd. The filter is applied as a *convolution*
(flipped), which is what both reference implementations do; for symmetric filters it makes no difference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def make_fir_kernel(taps: tuple[float, ...] | list[float], gain: float = 1.0) -> torch.Tensor:
    """Normalised 2-D filter from 1-D taps (outer product, sums to ``gain``)."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    if k.ndim == 1:
        k = k[:, None] * k[None, :]
    return k / k.sum() * gain


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] | tuple[int, int, int, int] = (0, 0),
) -> torch.Tensor:
    """Insert ``up - 1`` zeros between samples, pad, convolve with ``kernel``, keep every ``down``-th sample.

    ``pad`` is (before, after) for both axes or (x0, x1, y0, y1); negative values crop.
    """
    if len(pad) == 2:
        px0, px1, py0, py1 = pad[0], pad[1], pad[0], pad[1]
    else:
        px0, px1, py0, py1 = pad
    b, c, h, w = x.shape
    y = x
    if up > 1:
        y = y.reshape(b, c, h, 1, w, 1)
        y = F.pad(y, (0, up - 1, 0, 0, 0, up - 1))
        y = y.reshape(b, c, h * up, w * up)
    y = F.pad(y, (max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)))
    y = y[:, :, max(-py0, 0) : y.shape[2] - max(-py1, 0), max(-px0, 0) : y.shape[3] - max(-px1, 0)]
    k = torch.flip(kernel, [0, 1]).to(dtype=y.dtype, device=y.device)
    y = F.conv2d(y, k[None, None].expand(c, 1, *k.shape), groups=c)  # depthwise: the same filter per channel
    if down > 1:
        y = y[:, :, ::down, ::down]
    return y
