"""StyleGAN2 building blocks, named so the parameters match rosinality's state_dict keys.

Equalised learning rate: weights are stored at unit scale and multiplied by 1/sqrt(fan_in) (times the
learning-rate multiplier) at run time. Modulation scales a convolution's input channels by a style
computed from w; demodulation rescales each output channel to unit expected norm (paper, Sec. 2.2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from magec.generators.stylegan2.fused import LayerShape, demodulation, styled_layer
from magec.generators.stylegan2.upfirdn import make_fir_kernel, upfirdn2d

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


class PixelNorm(nn.Module):
    """Normalise each z to unit second moment before the mapping network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate; optional bias + leaky ReLU (gain sqrt 2)."""

    def __init__(
        self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        if self.activate:
            out = F.leaky_relu(out, LRELU_SLOPE) * LRELU_GAIN
        return out


class Blur(nn.Module):
    """FIR low-pass applied after a transposed convolution (``kernel`` already carries the up-sampling gain)."""

    def __init__(self, taps: tuple[float, ...], pad: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("kernel", make_fir_kernel(taps, gain))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR up-sampling of the RGB skip path."""

    def __init__(self, taps: tuple[float, ...], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_fir_kernel(taps, factor**2))
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by a style; optionally demodulated and 2x up-sampling.

    Computed as scale-input, shared-weight convolution, scale-output: the same function as the per-sample
    weight formulation of the paper, without building one weight tensor per image.
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: tuple[float, ...] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), gain=factor**2)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        s = self.modulation(style)  # (B, in)
        weight = self.weight[0] * self.scale  # (out, in, k, k)
        x = x * s.reshape(batch, -1, 1, 1)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            out = self.blur(out)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            out = out * demodulation(weight, s).reshape(batch, -1, 1, 1)
        return out


class NoiseInjection(nn.Module):
    """Adds a learned per-layer multiple of a single-channel noise map."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class BiasLeakyReLU(nn.Module):
    """Bias, leaky ReLU with gain sqrt(2), and NVIDIA's optional clamp (rosinality's ``FusedLeakyReLU`` keys)."""

    def __init__(self, channels: int, clamp: float | None = None) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.clamp = clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(x + self.bias.reshape(1, -1, 1, 1), LRELU_SLOPE) * LRELU_GAIN
        if self.clamp is not None:
            out = out.clamp(-self.clamp, self.clamp)
        return out


class ConstantInput(nn.Module):
    """The learned 4x4 input of the synthesis network."""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated 3x3 convolution, noise, bias and activation: one synthesis layer."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: tuple[float, ...] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, 3, style_dim, upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = BiasLeakyReLU(out_channel, conv_clamp)

    def forward(
        self,
        x: torch.Tensor,
        style: torch.Tensor,
        noise: torch.Tensor,
        fused: bool = True,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """``fused`` runs the layer as one memory-lean autograd node (``fused.py``); False runs the same
        function as separate tensor operations (the reference the fused node is tested against)."""
        if not fused:
            return self.activate(self.noise(self.conv(x, style), noise))
        conv = self.conv
        s = conv.modulation(style)
        d = demodulation(conv.weight[0] * conv.scale, s)
        shape = LayerShape(
            upsample=conv.upsample,
            weight_scale=conv.scale,
            padding=conv.padding,
            blur=torch.flip(conv.blur.kernel, [0, 1]) if conv.upsample else None,
            blur_pad=conv.blur.pad if conv.upsample else (0, 0),
            clamp=self.activate.clamp,
            dtype=dtype,
        )
        return styled_layer(x, s, d, noise, conv.weight, self.noise.weight, self.activate.bias, shape)


class ToRGB(nn.Module):
    """1x1 modulated (not demodulated) projection to RGB, added to the up-sampled image of the previous block."""

    def __init__(
        self,
        in_channel: int,
        style_dim: int,
        upsample: bool = True,
        blur_kernel: tuple[float, ...] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.clamp = conv_clamp

    def forward(
        self,
        x: torch.Tensor,
        style: torch.Tensor,
        skip: torch.Tensor | None = None,
        fused: bool = True,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        if fused:
            # A 1x1 modulated convolution is a per-image (3, C) x (C, H*W) product: autograd then keeps only
            # x (shared with the layer before) and the small per-image weight, not a modulated copy of x.
            dtype = dtype or x.dtype
            weight = (self.conv.weight[0, :, :, 0, 0] * self.conv.scale)[None] * self.conv.modulation(style)[:, None]
            b, c, h, w = x.shape
            out = torch.bmm(weight.to(dtype), x.to(dtype).reshape(b, c, h * w)).reshape(b, -1, h, w)
            out = out + self.bias.to(dtype)
        else:
            out = self.conv(x, style) + self.bias
        if self.clamp is not None:
            out = out.clamp(-self.clamp, self.clamp)
        if skip is not None:
            out = out + self.upsample(skip).to(out.dtype)
        return out
