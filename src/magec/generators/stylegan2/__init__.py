"""StyleGAN2: magec's own generator implementation and loaders for the common checkpoint formats."""

from magec.generators.stylegan2.config import StyleGAN2Config
from magec.generators.stylegan2.loaders import convert_checkpoint, load_stylegan2, save_safetensors
from magec.generators.stylegan2.model import StyleGAN2Generator

__all__ = ["StyleGAN2Config", "StyleGAN2Generator", "convert_checkpoint", "load_stylegan2", "save_safetensors"]
