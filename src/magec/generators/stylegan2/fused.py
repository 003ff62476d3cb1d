"""One StyleGAN2 synthesis layer as a single autograd node that keeps only what its backward needs.

A synthesis layer computes ``act(conv(x * s) * d + a * noise + b)`` (modulate, convolve, demodulate, noise,
bias, leaky ReLU with gain sqrt 2, optional clamp). Written as separate tensor operations, autograd keeps
four or five full-size activations per layer for the backward pass: the input, the modulated input, the
convolution's output and the pre-activation (and, for up-sampling layers, the transposed convolution's
output before the blur). At 1024 px that made one inversion step need 2.4x rosinality's memory.

This node keeps only the layer's input and output (the output is the next layer's input, so one full-size
tensor per layer in practice) and recomputes the rest in the backward pass from them:

- the leaky ReLU's gradient needs only the sign of its output (slope and gain are positive);
- the demodulation coefficient's gradient, a sum of g * c, is rewritten with the layer's output: since the
  pre-activation is c * d + noise + bias and sum g * pre-activation = sum (dL/dout) * out, it needs only the
  output and two small sums (of g, and of g times the one-channel noise map), taken as matrix products;
- the convolution's input gradient needs no activation at all (it is the transposed convolution), and its
  weight gradient (pivotal tuning only) needs the modulated input, recomputed as ``x * s``.

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


def _depthwise(kernel: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return kernel.to(like.dtype)[None, None].expand(like.shape[1], 1, *kernel.shape)


def _blur(t: torch.Tensor, shape: LayerShape) -> torch.Tensor:
    p0, p1 = shape.blur_pad
    if p0 != p1:  # the generators here pad symmetrically; kept general for other blur kernels
        t = F.pad(t, (p0, p1, p0, p1))
        p0 = 0
    return F.conv2d(t, _depthwise(shape.blur, t), padding=p0, groups=t.shape[1])


def _blur_adjoint(g: torch.Tensor, shape: LayerShape) -> torch.Tensor:
    """The blur's input gradient: its transpose, with the padding cut off."""
    p0, p1 = shape.blur_pad
    if p0 == p1:
        return F.conv_transpose2d(g, _depthwise(shape.blur, g), padding=p0, groups=g.shape[1])
    full = F.conv_transpose2d(g, _depthwise(shape.blur, g), groups=g.shape[1])
    return full[:, :, p0 : full.shape[2] - p1, p0 : full.shape[3] - p1]


def _modulated_conv(x: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, shape: LayerShape) -> torch.Tensor:
    """conv(x * s), the modulated input dropped before the blur (one full-size tensor less at the peak)."""
    if shape.upsample:
        t = F.conv_transpose2d(x * s[:, :, None, None], weight.transpose(0, 1), stride=2)
        return _blur(t, shape)
    return F.conv2d(x * s[:, :, None, None], weight, padding=shape.padding)


def _conv_input_grad(g: torch.Tensor, weight: torch.Tensor, shape: LayerShape) -> torch.Tensor:
    """The adjoint of the convolution (after the blur's, for up-sampling layers): needs no activation."""
    if shape.upsample:  # adjoint of conv_transpose2d(., W^T, stride 2) is conv2d(., W^T, stride 2)
        return F.conv2d(g, weight.transpose(0, 1), stride=2)
    return F.conv_transpose2d(g, weight, padding=shape.padding)


def _conv_weight_grad(g: torch.Tensor, xs: torch.Tensor, weight: torch.Tensor, shape: LayerShape) -> torch.Tensor:
    """The weight's gradient (pivotal tuning only), from the recomputed modulated input ``xs``."""
    if shape.upsample:
        args = (weight.transpose(0, 1), None, [2, 2], [0, 0], [1, 1], True, [0, 0], 1, [False, True, False])
        return torch.ops.aten.convolution_backward(g, xs, *args)[1].transpose(0, 1)
    args = (weight, None, [1, 1], [shape.padding] * 2, [1, 1], False, [0, 0], 1, [False, True, False])
    return torch.ops.aten.convolution_backward(g, xs, *args)[1]


def _sum_to(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reduce a broadcast gradient back to the shape of the tensor it was broadcast from."""
    dims = [i for i, (a, b) in enumerate(zip(t.shape, like.shape)) if b == 1 and a != 1]
    return (t.sum(dims, keepdim=True) if dims else t).reshape(like.shape)


def _channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum over H, W of a * b, per image and channel, (B, C), without an (B, C, H, W) product in memory."""
    batch, channels = a.shape[:2]
    return (a.reshape(batch * channels, 1, -1) @ b.reshape(batch * channels, -1, 1)).reshape(batch, channels)


def _maps_dot(g: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """sum over H, W of g (B, C, H, W) times each of ``maps`` (B or 1, K, H, W): (B, C, K), as one product."""
    batch, channels = g.shape[:2]
    maps = maps.expand(batch, -1, -1, -1).reshape(batch, maps.shape[1], -1)
    return g.reshape(batch, channels, -1) @ maps.transpose(1, 2)


class _StyledLayer(torch.autograd.Function):
    """Forward: out = lrelu(c * gd + gain * (bias + noise_weight * noise)), c = conv(x * s), gd = gain * d (the
    gain of sqrt 2 moved inside the positively homogeneous leaky ReLU), computed in place on c.

    Backward, with g = dL/d(pre-activation) = leaky_relu_backward(dL/dout, out):
    dL/dd = (sum u * out - gain * bias * sum g - gain * noise_weight * sum g * noise) / d per image and channel
    (sum g * pre = sum u * out, and pre = c * gd + gain * (bias + noise_weight * noise)), so neither c nor the
    pre-activation is needed, and the sums are matrix products that write no full-size tensor.
    """

    @staticmethod
    def forward(ctx, x, s, d, noise, weight, noise_weight, bias, shape: LayerShape):
        dtype = shape.dtype or x.dtype
        x, s, d, noise = x.to(dtype), s.to(dtype), d.to(dtype), noise.to(dtype)
        noise_weight, bias = noise_weight.to(dtype), bias.to(dtype)
        out = _modulated_conv(x, s, (weight[0] * shape.weight_scale).to(dtype), shape)
        out.mul_((d * LRELU_GAIN)[:, :, None, None]).add_((bias * LRELU_GAIN)[None, :, None, None])
        out.add_(noise * (noise_weight * LRELU_GAIN))
        F.leaky_relu_(out, LRELU_SLOPE)
        if shape.clamp is not None:
            out.clamp_(-shape.clamp, shape.clamp)
        ctx.save_for_backward(x, s, d, noise, weight, noise_weight, bias, out)
        ctx.shape = shape
        ctx.input_dtypes = (x.dtype, s.dtype, d.dtype, noise.dtype, weight.dtype, noise_weight.dtype, bias.dtype)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, s, d, noise, weight, noise_weight, bias, out = ctx.saved_tensors
        shape: LayerShape = ctx.shape
        need = ctx.needs_input_grad
        grad = grad.to(out.dtype)
        if shape.clamp is not None:  # clamped outputs pass no gradient (and the identity above holds elsewhere)
            grad = grad * (out.abs() < shape.clamp)
        g = torch.ops.aten.leaky_relu_backward(grad, out, LRELU_SLOPE, True)
        g_x = g_s = g_d = g_noise = g_weight = g_noise_weight = g_bias = None
        if need[2] or need[5] or need[6]:
            sums = _maps_dot(g, torch.cat([torch.ones_like(noise), noise], 1))  # (B, C, 2): sum g, sum g * noise
            sum_g, sum_gn = sums[..., 0], sums[..., 1]
            if need[2]:
                uo = _channel_dot(grad, out)
                g_d = (uo - LRELU_GAIN * (bias * sum_g + noise_weight * sum_gn)) / d
            if need[5]:
                g_noise_weight = (LRELU_GAIN * sum_gn.sum()).reshape(noise_weight.shape)
            if need[6]:
                g_bias = LRELU_GAIN * sum_g.sum(0)
        del grad
        if need[3]:
            g_noise = _sum_to((LRELU_GAIN * noise_weight) * g.sum(1, keepdim=True), noise)
        if need[0] or need[1] or need[4]:
            g = g.mul_((d * LRELU_GAIN)[:, :, None, None])  # dL/dc
            if shape.upsample:
                g = _blur_adjoint(g, shape)  # rebinding frees dL/dc: one full-size tensor alive, not two
            scaled = (weight[0] * shape.weight_scale).to(x.dtype)
            if need[4]:
                g_weight = (_conv_weight_grad(g, x * s[:, :, None, None], scaled, shape) * shape.weight_scale)[None]
            if need[0] or need[1]:
                g_xs = _conv_input_grad(g, scaled, shape)
                del g
                if need[1]:
                    g_s = _channel_dot(g_xs, x)
                if need[0]:
                    g_x = g_xs.mul_(s[:, :, None, None])
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
