"""Image input and output.

Inputs of any common format, size and mode (RGBA, grayscale, palette, 16-bit, EXIF-rotated) become
float tensors in [-1, 1], NCHW, RGB. Geometry: the largest centred square is cropped, then resized
(Lanczos) to the generator's resolution. Use ``magec align`` first for FFHQ-style face alignment.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from magec._version import __version__
from magec.errors import file_error
from magec.io.atomic import atomic_path
from magec.validation import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:  # torch loads only when a tensor is made: reading and checking images stays light
    import torch

#: The PNG text chunk that marks an image as magec's output (so magec may replace it later).
SOFTWARE_TAG = "magec"

_PILLOW_LIMIT_LOCK = threading.Lock()


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
    return img if img.mode == "RGB" else img.convert("RGB")


@contextlib.contextmanager
def _pillow_pixel_limit() -> Iterator[None]:
    """Let magec's own limit, checked on the header right after ``Image.open``, replace Pillow's bomb check
    (Pillow refuses images above twice its ``MAX_IMAGE_PIXELS`` inside ``open`` and warns above it)."""
    with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        before = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


def _decoded_reduced(img: Image.Image, reduce_to: int | None) -> bool:
    """Whether ``read_image`` decodes this opened file reduced (libjpeg's DCT scaling: large JPEGs only)."""
    return reduce_to is not None and max(img.size) > 2 * reduce_to and img.format == "JPEG"


def decodes_reduced(path: str | Path, reduce_to: int) -> bool:
    """Whether ``read_image(path, reduce_to=reduce_to)`` gives a reduced photo; when not, its size is the whole
    photo's upright size, without ``image_size`` (whose EXIF look decodes a whole PNG: 17 ms at 512 px)."""
    with _pillow_pixel_limit(), Image.open(path) as img:
        return _decoded_reduced(img, reduce_to)


def read_image(
    path: str | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reduce_to: int | None = None,
    limit_option: str = "--max-pixels",
) -> Image.Image:
    """Open ``path`` as an upright 8-bit RGB image, or raise a one-line ``MagecError`` naming the file.

    ``limit_option``: the option that raises ``max_pixels``, named in the refusal ("" where the caller has none,
    e.g. the studio's page: the message then asks for a smaller photo).

    The size in the file's header is checked against ``max_pixels`` before any pixel is decoded, so a
    decompression bomb costs nothing. With ``reduce_to``, a large JPEG is decoded at a reduced scale
    (libjpeg's DCT scaling, 1/2 to 1/8) whose longer side stays at least ``reduce_to`` pixels: a 144 MP
    photo then needs a few MB instead of 432 MB.
    """
    path = Path(path)
    if not path.exists():
        raise file_error(path, "no such file")
    if path.is_dir():
        raise file_error(path, "is a folder, not an image")
    if path.stat().st_size == 0:
        raise file_error(path, "empty file, not an image")
    try:
        with _pillow_pixel_limit(), Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise file_error(
                    path,
                    f"image is {width}x{height} ({width * height / 1e6:.0f} megapixels), above the limit of "
                    f"{max_pixels / 1e6:.0f} megapixels "
                    + (f"(raise it with {limit_option})" if limit_option else "(shrink or crop the photo)"),
                )
            if _decoded_reduced(img, reduce_to):
                scale = reduce_to / max(width, height)
                img.draft(None, (max(1, int(width * scale + 0.999)), max(1, int(height * scale + 0.999))))
            img.load()
            if img.getexif().get(0x0112, 1) != 1:  # copies only when the photo needs turning
                img = ImageOps.exif_transpose(img)
            rgb = _to_rgb8(img)
    except UnidentifiedImageError:
        raise file_error(path, "not a readable image (unknown or unsupported format)") from None
    except Image.DecompressionBombError as exc:
        raise file_error(
            path,
            f"image is too large to decode safely ({exc}); "
            + (f"raise the limit with {limit_option}" if limit_option else "shrink or crop the photo"),
        ) from None
    except MemoryError:
        raise file_error(
            path,
            "not enough memory to decode this image; "
            + (f"lower {limit_option} or shrink the photo" if limit_option else "shrink the photo"),
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise file_error(path, f"unreadable or truncated image ({exc})") from None
    if rgb.width < 1 or rgb.height < 1:
        raise file_error(path, "image has no pixels")
    return rgb


def image_size(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """The upright (EXIF-rotated) size of an image, read from its header only."""
    try:
        with _pillow_pixel_limit(), Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise file_error(path, f"unreadable image ({exc})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


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
    import torch

    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


#: ImageNet normalisation (torchvision's classifiers, LPIPS-free VGG features, ArcFace/MoCo inputs).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """An image tensor in [-1, 1] (any shape) as uint8 bytes on the CPU, rounded."""
    import torch

    return ((image.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) tensor in [-1, 1] -> 8-bit RGB PIL image."""

    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    arr = to_uint8(image)
    return Image.fromarray(arr.permute(1, 2, 0).numpy(), mode="RGB")


def load_image(path: str | Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Read any image file and return it as a (1, 3, size, size) tensor in [-1, 1]."""
    return pil_to_tensor(center_square(read_image(path, max_pixels, reduce_to=max(4 * size, 1024)), size))


def save_png(image: torch.Tensor | Image.Image, target: str | Path) -> Path:
    """Write one image as PNG atomically (temporary name, then rename), tagged as magec's output."""
    pil = image if isinstance(image, Image.Image) else tensor_to_pil(image)
    target = Path(target)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", f"{SOFTWARE_TAG} {__version__}")
    with atomic_path(target) as tmp:
        pil.save(tmp, format="PNG", pnginfo=info)
    return target


def is_magec_png(path: str | Path) -> bool:
    """True when ``path`` is a PNG that magec wrote (its Software text chunk says so)."""
    try:
        with Image.open(path) as img:
            return img.format == "PNG" and str(img.info.get("Software", "")).startswith(SOFTWARE_TAG + " ")
    except (OSError, ValueError, SyntaxError):
        return False
