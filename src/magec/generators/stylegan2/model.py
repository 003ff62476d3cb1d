"""magec's own StyleGAN2 generator (Karras et al., 2020), behind the common Generator interface.

Module and parameter names follow rosinality's stylegan2-pytorch ``Generator`` so its ``g_ema``
state_dicts load strictly; NVIDIA pickles are renamed onto the same layout (see ``nvidia.py``).

Latent spaces: ``w`` (one code, the editing space: GANSpace and InterfaceGAN work in W), ``w+`` (one code
per style input) and the per-layer noise maps. ``synthesize(..., noise=None)`` uses the generator's own
fixed noise buffers, so an image is a deterministic function of its code.
"""

from __future__ import annotations

import torch
from torch import nn

from magec.generators.base import Generator, LatentSpace
from magec.generators.stylegan2.config import StyleGAN2Config
from magec.generators.stylegan2.layers import ConstantInput, EqualLinear, PixelNorm, StyledConv, ToRGB
from magec.seeding import generator_for, randn

#: The paper's number of samples for the average W ("Training Protocol").
W_AVG_SAMPLES = 50_000


class StyleGAN2Generator(Generator):
    """Mapping network (PixelNorm + ``n_mlp`` equalised FC layers) and skip-architecture synthesis network."""

    spec = "stylegan2"
    reduced_precisions = ("bf16",)

    def __init__(
        self, config: StyleGAN2Config | None = None, truncation_psi: float = 1.0, w_avg_samples: int = W_AVG_SAMPLES
    ) -> None:
        super().__init__()
        config = config or StyleGAN2Config()
        self.config = config
        self.resolution = config.resolution
        self.style_dim = config.style_dim
        self.n_latent = config.n_latent
        self.truncation_psi = truncation_psi
        self.w_avg_samples = w_avg_samples
        self.spaces = {
            "w": LatentSpace("w", (config.style_dim,)),
            "w+": LatentSpace("w+", (config.n_latent, config.style_dim)),
        }
        d, blur, clamp = config.style_dim, config.blur_kernel, config.conv_clamp
        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(d, d, lr_mul=config.lr_mlp, activate=True) for _ in range(config.n_mlp)]
        )

        ch = config.channel_table()
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], d, blur_kernel=blur, conv_clamp=clamp)
        self.to_rgb1 = ToRGB(ch[4], d, upsample=False, blur_kernel=blur, conv_clamp=clamp)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i, res in enumerate(config.noise_resolutions()):
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_channel = ch[4]
        for i in range(3, config.log_size + 1):
            out_channel = ch[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, d, upsample=True, blur_kernel=blur, conv_clamp=clamp))
            self.convs.append(StyledConv(out_channel, out_channel, d, blur_kernel=blur, conv_clamp=clamp))
            self.to_rgbs.append(ToRGB(out_channel, d, blur_kernel=blur, conv_clamp=clamp))
            in_channel = out_channel

        # Not in the state_dict (rosinality keeps it beside g_ema as ``latent_avg``).
        self.register_buffer("w_avg", torch.zeros(d), persistent=False)
        self.w_avg_source = ""  # "checkpoint", "sampled", or "" (not known yet)
        #: Each synthesis layer as one memory-lean autograd node (``fused.py``); False: plain tensor operations.
        self.fused = True
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def random(cls, config: StyleGAN2Config | None = None, seed: int = 0, **kwargs) -> StyleGAN2Generator:
        """A generator with seeded random weights (tests, benchmarks).

        Unlike a fresh training initialisation, noise strengths and biases are non-zero so every input
        (W, W+ and each noise map) has an effect on the image.
        """
        model = cls(config, **kwargs)
        gen = generator_for(seed)
        with torch.no_grad():
            for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
                if name.endswith("kernel") or name == "w_avg":
                    continue
                noise = torch.randn(tensor.shape, generator=gen)
                if name.startswith("style.") and name.endswith(".weight"):
                    tensor.copy_(noise / model.config.lr_mlp)
                elif name.startswith("style.") and name.endswith(".bias"):
                    tensor.copy_(noise * 0.1 / model.config.lr_mlp)
                elif name.endswith("modulation.bias"):
                    tensor.copy_(1.0 + 0.1 * noise)
                elif name.endswith("bias") or name.endswith("noise.weight"):
                    tensor.copy_(0.1 * noise)
                else:
                    tensor.copy_(noise)
        return model

    @property
    def has_noise(self) -> bool:
        return True

    @property
    def num_noise(self) -> int:
        return self.config.num_noise

    def map(self, z: torch.Tensor, truncation_psi: float | None = None) -> torch.Tensor:
        """z (B, style_dim) -> w (B, style_dim), optionally truncated towards the average w."""
        w = self.style(z)
        psi = self.truncation_psi if truncation_psi is None else truncation_psi
        return self.truncate(w, psi) if psi != 1 else w

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """The truncation trick: w_avg + psi * (w - w_avg)."""
        w_avg = self.initial_latent()
        return w_avg + psi * (w - w_avg)

    @torch.no_grad()
    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        """``n`` mapped W codes from seeded z (truncated when the generator has ``truncation_psi`` < 1)."""
        return self.map(randn((n, self.style_dim), seed, self.device))

    def set_w_avg(self, w_avg: torch.Tensor) -> None:
        """Record the average W stored with a checkpoint (what ``initial_latent`` returns)."""
        self.w_avg.copy_(w_avg.reshape(self.style_dim).to(self.w_avg))
        self.w_avg_source = "checkpoint"

    @torch.no_grad()
    def initial_latent(self) -> torch.Tensor:
        """w_avg: the checkpoint's stored average, else the mean of ``w_avg_samples`` mapped samples (seed 0)."""
        if not self.w_avg_source:
            total = torch.zeros(self.style_dim, dtype=torch.float64, device=self.device)
            z = randn((self.w_avg_samples, self.style_dim), 0)
            for chunk in z.split(4096):
                total += self.style(chunk.to(self.device)).double().sum(0)
            self.w_avg.copy_((total / self.w_avg_samples).float())
            self.w_avg_source = "sampled"
        return self.w_avg.clone()

    def convert_latents(self, latents: torch.Tensor, source: str, target: str) -> torch.Tensor:
        if (source, target) == ("w", "w+"):
            return latents.unsqueeze(1).repeat(1, self.n_latent, 1)
        return super().convert_latents(latents, source, target)

    def make_noise(self, batch: int, seed: int) -> list[torch.Tensor]:
        """Fresh noise maps, (batch, 1, r, r) per layer, that depend only on ``seed``."""
        gen = generator_for(seed)
        return [torch.randn((batch, 1, r, r), generator=gen).to(self.device) for r in self.config.noise_resolutions()]

    def fixed_noise(self) -> list[torch.Tensor]:
        """The generator's own noise buffers (what ``synthesize`` uses when given no noise)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_noise)]

    def synthesize(
        self, latents: torch.Tensor, space: str | None = None, noise: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Images (B, 3, R, R) from W codes (B, D) or W+ codes (B, n_latent, D).

        The output is the raw network output (nominally in [-1, 1]); it is not clamped, so gradients
        reach every code.
        """
        space = space or "w"
        if space == "w":
            if latents.ndim != 2 or latents.shape[1] != self.style_dim:
                raise ValueError(
                    f"{self.spec}: W codes must have shape (B, {self.style_dim}), got {tuple(latents.shape)}"
                )
            ws = latents.unsqueeze(1).expand(-1, self.n_latent, -1)
        elif space == "w+":
            if latents.ndim != 3 or latents.shape[1:] != (self.n_latent, self.style_dim):
                raise ValueError(
                    f"{self.spec}: W+ codes must have shape (B, {self.n_latent}, {self.style_dim}), "
                    f"got {tuple(latents.shape)}"
                )
            ws = latents
        else:
            raise ValueError(f"{self.spec}: unknown latent space {space!r} (have 'w', 'w+')")
        noise = self.fixed_noise() if noise is None else list(noise)
        if len(noise) != self.num_noise:
            raise ValueError(f"{self.spec}: expected {self.num_noise} noise maps, got {len(noise)}")
        return self.synthesis(ws, noise)

    def style_layers(self, include_rgb: bool = False) -> list[tuple[int, nn.Module]]:
        """(W+ index, modulated layer) for every style input, in synthesis order (ToRGB layers only on request)."""
        out: list[tuple[int, nn.Module]] = [(0, self.conv1)]
        if include_rgb:
            out.append((1, self.to_rgb1))
        for j, conv in enumerate(self.convs):
            out.append((j + 1, conv))
            if include_rgb and j % 2 == 1:
                out.append((j + 2, self.to_rgbs[j // 2]))
        return out

    def sefa_weight(self, layers: list[int] | None = None, include_rgb: bool = False) -> torch.Tensor:
        """Concatenated style-modulation weights (sum of input channels, style_dim) of the layers fed by W+ ``layers``.

        SeFa factorises the affine maps from w to the per-layer styles; None = every convolution layer
        (as in SeFa), ToRGB layers only with ``include_rgb``. Weights include the equalised-lr scale.
        """
        chosen = [m for i, m in self.style_layers(include_rgb) if layers is None or i in layers]
        if layers is not None and (not chosen or any(not 0 <= i < self.n_latent for i in layers)):
            raise ValueError(f"{self.spec}: SeFa layers must be W+ indices in 0..{self.n_latent - 1}, got {layers}")
        return torch.cat([m.conv.modulation.weight * m.conv.modulation.scale for m in chosen])

    def synthesis(self, ws: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        """The synthesis network on W+ codes (B, n_latent, D); layer i reads ws[:, i] as in both reference codes.

        Layers run in ``compute_dtype`` when ``precision("bf16")`` is active; the image has the codes' dtype.
        """
        reduced = self.fused and self.compute_dtype != torch.float32
        opts = {"fused": self.fused, "dtype": self.compute_dtype if reduced else None}
        out = self.input(ws.shape[0])
        out = self.conv1(out, ws[:, 0], noise[0], **opts)
        skip = self.to_rgb1(out, ws[:, 1], **opts)
        i = 1
        for conv_up, conv, noise_up, noise_same, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            out = conv_up(out, ws[:, i], noise_up, **opts)
            out = conv(out, ws[:, i + 1], noise_same, **opts)
            skip = to_rgb(out, ws[:, i + 2], skip, **opts)
            i += 2
        return skip.to(ws.dtype)
