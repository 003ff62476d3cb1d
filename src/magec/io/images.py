"""Image input and output.

Inputs of any common format, size and mode (RGBA, grayscale, palette, 16-bit, EXIF-rotated) become
float tensors in [-1, 1], NCHW, RGB. Geometry: the largest centred square is cropped, then resized
(Lanczos) to the generator's resolution. Use ``magec align`` first for FFHQ-style face alignment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from magec.errors import file_error
from magec.io.atomic import atomic_path


def _to_rgb8(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; 16-bit and float modes are rescaled, alpha is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F":
            lo, hi = float(arr.min()), float(arr.max()) or 1.0
            arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
        else:
            arr = arr / hi * 255.0
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def read_image(path: str | Path) -> Image.Image:
    """Open ``path`` as an upright 8-bit RGB image, or raise a one-line ``MagecError`` naming the file."""
    path = Path(path)
    if not path.exists():
        raise file_error(path, "no such file")
    if path.is_dir():
        raise file_error(path, "is a folder, not an image")
    if path.stat().st_size == 0:
        raise file_error(path, "empty file, not an image")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb8(img)
    except UnidentifiedImageError:
        raise file_error(path, "not a readable image (unknown or unsupported format)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise file_error(path, f"unreadable or truncated image ({exc})") from None
    if rgb.width < 1 or rgb.height < 1:
        raise file_error(path, "image has no pixels")
    return rgb


def center_square(img: Image.Image, size: int) -> Image.Image:
    """Crop the largest centred square and resize it to ``size`` x ``size``."""
    side = min(img.width, img.height)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> (1, 3, H, W) float tensor in [-1, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) tensor in [-1, 1] -> 8-bit RGB PIL image."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    arr = ((image.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).numpy(), mode="RGB")


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """Read any image file and return it as a (1, 3, size, size) tensor in [-1, 1]."""
    return pil_to_tensor(center_square(read_image(path), size))


def save_png(image: torch.Tensor | Image.Image, target: str | Path) -> Path:
    """Write one image as PNG atomically (temporary name, then rename)."""
    pil = image if isinstance(image, Image.Image) else tensor_to_pil(image)
    target = Path(target)
    with atomic_path(target) as tmp:
        pil.save(tmp, format="PNG")
    return target
