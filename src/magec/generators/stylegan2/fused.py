"""One StyleGAN2 synthesis layer as a single autograd node that keeps only what its backward needs.

A synthesis layer computes ``act(conv(x * s) * d + a * noise + b)`` (modulate, convolve, demodulate, noise,
bias, leaky ReLU with gain sqrt 2, optional clamp). Written as separate tensor operations, autograd keeps
four or five full-size activations per layer for the backward pass: the input, the modulated input, the
convolution's output and the pre-activation (and, for up-sampling layers, the transposed convolution's
output before the blur). At 1024 px that made one inversion step need 2.4x rosinality's memory.

This node keeps only the layer's input and output (the output is the next layer's input, so one full-size
tensor per layer in practice) and recomputes the rest in the backward pass from them:

- the leaky ReLU's gradient needs only the sign of its output (slope and gain are positive);
- the demodulation coefficient's gradient needs the convolution's output ``c``, recovered exactly from
  the output by inverting the activation and subtracting noise and bias (where a clamp cut the output its
  gradient is zero, so the recovered value there is never used);
- the convolution's input gradient needs no activation at all, and its weight gradient (pivotal tuning
  only) needs the modulated input, recomputed as ``x * s``.

Gradients for every input (the input, the style, the demodulation coefficients, the noise map, the weights,
the noise strength and the bias) are computed only when that input requires them. A test checks values
and gradients against the plain layer (``fused=False``).

``dtype`` runs the layer in bfloat16 (``--precision bf16``): inputs are cast on entry, activations are kept
in that type (half the memory) and the backward runs in it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = 2.0**0.5


@dataclass(frozen=True)
class LayerShape:
    """The static part of one synthesis layer (what the backward pass needs besides tensors)."""

    upsample: bool
    #: The equalised learning rate's factor: the convolution's weight is ``raw_weight[0] * weight_scale``.
    weight_scale: float
    #: 3x3 convolutions pad by 1; the 2x transposed convolution pads nothing and is followed by the blur.
    padding: int
    #: For up-sampling layers: the blur's depthwise FIR kernel (already flipped, as ``upfirdn2d`` applies it)
    #: and its padding (before, after).
    blur: torch.Tensor | None = None
    blur_pad: tuple[int, int] = (0, 0)
    clamp: float | None = None
    dtype: torch.dtype | None = None


def _blur(t: torch.Tensor, shape: LayerShape) -> torch.Tensor:
    p0, p1 = shape.blur_pad
    channels = t.shape[1]
    kernel = shape.blur.to(t.dtype)[None, None].expand(channels, 1, *shape.blur.shape)
    return F.conv2d(F.pad(t, (p0, p1, p0, p1)), kernel, groups=channels)


def _blur_adjoint(g: torch.Tensor, shape: LayerShape) -> torch.Tensor:
    """The blur's input gradient: its transpose, then the padding cut off again."""
    p0, p1 = shape.blur_pad
    channels = g.shape[1]
    kernel = shape.blur.to(g.dtype)[None, None].expand(channels, 1, *shape.blur.shape)
    full = F.conv_transpose2d(g, kernel, groups=channels)
    return full[:, :, p0 : full.shape[2] - p1, p0 : full.shape[3] - p1]


def _conv(xs: torch.Tensor, weight: torch.Tensor, shape: LayerShape) -> torch.Tensor:
    if shape.upsample:
        return _blur(F.conv_transpose2d(xs, weight.transpose(0, 1), stride=2), shape)
    return F.conv2d(xs, weight, padding=shape.padding)


def _conv_backward(
    g: torch.Tensor, xs: torch.Tensor, weight: torch.Tensor, shape: LayerShape, need_input: bool, need_weight: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Input and weight gradients of ``_conv`` (only those asked for), without its forward activations."""
    if shape.upsample:
        g = _blur_adjoint(g, shape)
        conv_weight, stride, padding, transposed = weight.transpose(0, 1), [2, 2], [0, 0], True
    else:
        conv_weight, stride, padding, transposed = weight, [1, 1], [shape.padding] * 2, False
    g_in, g_w, _ = torch.ops.aten.convolution_backward(
        g, xs, conv_weight, None, stride, padding, [1, 1], transposed, [0, 0], 1, [need_input, need_weight, False]
    )
    if g_w is not None and shape.upsample:
        g_w = g_w.transpose(0, 1)
    return g_in, g_w


def _sum_to(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reduce a broadcast gradient back to the shape of the tensor it was broadcast from."""
    dims = [i for i, (a, b) in enumerate(zip(t.shape, like.shape)) if b == 1 and a != 1]
    return (t.sum(dims, keepdim=True) if dims else t).reshape(like.shape)


class _StyledLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, s, d, noise, weight, noise_weight, bias, shape: LayerShape):  # noqa: ANN001, ANN205
        dtype = shape.dtype or x.dtype
        x, s, d, noise = x.to(dtype), s.to(dtype), d.to(dtype), noise.to(dtype)
        noise_weight, bias = noise_weight.to(dtype), bias.to(dtype)
        out = _conv(x * s[:, :, None, None], (weight[0] * shape.weight_scale).to(dtype), shape)
        out.mul_(d[:, :, None, None]).add_(noise_weight * noise).add_(bias[None, :, None, None])
        F.leaky_relu(out, LRELU_SLOPE, inplace=True).mul_(LRELU_GAIN)
        if shape.clamp is not None:
            out.clamp_(-shape.clamp, shape.clamp)
        ctx.save_for_backward(x, s, d, noise, weight, noise_weight, bias, out)
        ctx.shape = shape
        ctx.input_dtypes = (x.dtype, s.dtype, d.dtype, noise.dtype, weight.dtype, noise_weight.dtype, bias.dtype)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, s, d, noise, weight, noise_weight, bias, out = ctx.saved_tensors
        shape: LayerShape = ctx.shape
        need = ctx.needs_input_grad
        positive = out > 0
        slope = positive.to(out.dtype).mul_(LRELU_GAIN * (1 - LRELU_SLOPE)).add_(LRELU_GAIN * LRELU_SLOPE)
        g_pre = grad.to(out.dtype) * slope
        if shape.clamp is not None:
            g_pre = g_pre * (out.abs() < shape.clamp)
        g_x = g_s = g_d = g_noise = g_weight = g_noise_weight = g_bias = None
        if need[2]:  # the convolution's output, recovered from the layer's output
            conv_out = (out / slope - noise_weight * noise - bias[None, :, None, None]) / d[:, :, None, None]
            g_d = (g_pre * conv_out).sum((2, 3))
            del conv_out
        if need[3]:
            g_noise = _sum_to((g_pre * noise_weight).sum(1, keepdim=True), noise)
        if need[5]:
            g_noise_weight = (g_pre * noise).sum().reshape(noise_weight.shape)
        if need[6]:
            g_bias = g_pre.sum((0, 2, 3))
        if need[0] or need[1] or need[4]:
            g_conv = g_pre * d[:, :, None, None]
            del g_pre
            xs = x * s[:, :, None, None]
            scaled = (weight[0] * shape.weight_scale).to(x.dtype)
            g_xs, g_weight = _conv_backward(g_conv, xs, scaled, shape, need[0] or need[1], need[4])
            del g_conv, xs
            if g_weight is not None:
                g_weight = (g_weight * shape.weight_scale)[None]
            if need[0]:
                g_x = g_xs * s[:, :, None, None]
            if need[1]:
                g_s = (g_xs * x).sum((2, 3))
        grads = (g_x, g_s, g_d, g_noise, g_weight, g_noise_weight, g_bias)
        return (*(g if g is None else g.to(t) for g, t in zip(grads, ctx.input_dtypes)), None)


def styled_layer(
    x: torch.Tensor,
    s: torch.Tensor,
    d: torch.Tensor,
    noise: torch.Tensor,
    weight: torch.Tensor,
    noise_weight: torch.Tensor,
    bias: torch.Tensor,
    shape: LayerShape,
) -> torch.Tensor:
    """``act(conv(x * s) * d + noise_weight * noise + bias)`` as one memory-lean autograd node.

    x (B, in, H, W); s (B, in) the style; d (B, out) the demodulation coefficients (ones when not
    demodulating); noise (B or 1, 1, H', W'); weight (out, in, k, k) already scaled; noise_weight (1,); bias (out,).
    """
    return _StyledLayer.apply(x, s, d, noise, weight, noise_weight, bias, shape)


def demodulation(weight: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """d (B, out) = 1 / sqrt(sum_{i,k} (weight_oik s_i)^2 + 1e-8), as a (B, in) x (in, out) product.

    The same sum as building the (B, out, in, k, k) modulated weights, grouped differently: no per-sample
    weight tensor is made or kept for the backward pass.
    """
    return torch.rsqrt(s.square() @ weight.square().sum((2, 3)).t() + 1e-8)
