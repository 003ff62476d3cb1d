"""Where evaluated images come from: a folder of the user's images, or fresh generator samples.

Images are loaded one chunk at a time, so an evaluation of many high-resolution photos never holds
them all in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from magec import validation
from magec.errors import MagecError, file_error
from magec.io.image_files import IMAGE_SUFFIXES, folder_files
from magec.io.images import load_image
from magec.memory import chunk_size, map_chunks, synthesis_bytes
from magec.validation import DEFAULT_MAX_PIXELS

#: Offset added to the user's seed for generated evaluation inputs, and for generated reference samples,
#: so neither coincides with samples drawn from small seeds elsewhere (e.g. when a pack is prepared).
GENERATED_SEED_OFFSET = 7_000_003
REFERENCE_SEED_OFFSET = 9_000_011


@dataclass
class ImageSource:
    """Named images: ``ids[i]`` is a stable key, ``load(indices)`` returns them as (B, 3, R, R) in [-1, 1]."""

    ids: list[str]
    description: str
    _load: Callable[[Sequence[int]], torch.Tensor] = field(repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        return self._load(indices)


def image_files(folder: str | Path, limit: int | None = None, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """The image files of ``folder`` as ``magec invert DIR`` finds them (``magec.io.image_files``: recursive, sorted
    by path, hidden names and the folders in ``exclude`` left out), at most ``limit``; one-line error if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise file_error(folder, "not a folder of images")
    if limit is not None:
        validation.integer("--limit", limit, 1)
    files = folder_files(folder, exclude).images
    if limit is not None:
        files = files[:limit]
    if not files:
        raise file_error(folder, f"contains no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def folder_source(
    folder: str | Path,
    resolution: int,
    limit: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    exclude: Iterable[str | Path] = (),
) -> ImageSource:
    """Every image file in ``folder`` (``image_files``), centre-cropped and resized to ``resolution``."""
    folder = Path(folder)
    files = image_files(folder, limit, exclude)
    ids = [f"{i:05d}-{p.stem}" for i, p in enumerate(files)]

    def load(indices: Sequence[int]) -> torch.Tensor:
        return torch.cat([load_image(files[i], resolution, max_pixels) for i in indices])

    return ImageSource(ids, f"{len(files)} images from {folder}", load)


def generated_source(
    generator, n: int, seed: int, offset: int = GENERATED_SEED_OFFSET, label: str = "generator samples"
) -> ImageSource:
    """``n`` generator samples G(z) with latents from seed ``seed + offset`` (images the pack never saw)."""
    if n < 1:
        raise MagecError(f"--generated {n}: need at least one image")
    latents = generator.sample_latents(n, seed + offset)

    @torch.no_grad()
    def load(indices: Sequence[int]) -> torch.Tensor:
        z = latents[list(indices)].to(generator.device)
        # 64 reference samples at 1024 px would need ~60 GB at once: chunks from the memory budget
        size = chunk_size(synthesis_bytes(generator), generator.device, cap=len(z)).size
        parts = map_chunks(
            lambda a, b: generator.synthesize(z[a:b]).detach().cpu(),
            len(z),
            size,
            device=generator.device,
            resolution=generator.resolution,
        )
        return torch.cat(parts)

    return ImageSource([f"{i:05d}-gen" for i in range(n)], f"{n} {label} (latent seed {seed + offset})", load)


def faces_source(
    folder: str | Path,
    resolution: int,
    framing: str,
    limit: int | None = None,
    max_faces: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    exclude: Iterable[str | Path] = (),
) -> ImageSource:
    """Every face dlib finds in the photos of ``folder`` (``image_files``; in a photo, largest face first), framed
    for the generator as ``magec invert --face-crop`` (``framing="face-crop"``) or ``--align`` (``"align"``) frames
    a photo, at most ``max_faces`` in all. The crops are made once, here (each photo is decoded and searched once
    per face), and kept: ``resolution``-sized crops are small. Ids: ``<photo index>-<stem>-face<k>``.
    """
    from PIL import Image

    from magec.faces.detection import DETECTION_SIDE
    from magec.faces.framing import FRAMINGS, frame_face
    from magec.io.images import pil_to_tensor, read_image

    validation.choice("framing", framing, FRAMINGS)
    if max_faces is not None:
        validation.integer("--max-faces", max_faces, 1)
    files = image_files(folder, limit, exclude)
    ids: list[str] = []
    crops: list[torch.Tensor] = []
    photos_without_faces = searched = 0
    for i, path in enumerate(files):
        if max_faces is not None and len(crops) >= max_faces:
            break
        searched += 1
        photo: Image.Image = read_image(path, max_pixels, reduce_to=DETECTION_SIDE)  # as invert --face-crop
        k = 0
        while max_faces is None or len(crops) < max_faces:
            try:
                crop = frame_face(photo, resolution, framing, face_index=k)
            except MagecError:  # no face k (or none at all)
                break
            ids.append(f"{i:05d}-{path.stem}-face{k}")
            crops.append(pil_to_tensor(crop))
            k += 1
        photos_without_faces += k == 0
    if not crops:
        raise file_error(folder, "dlib finds no face in its images")
    stack = torch.cat(crops)
    kind = {"face-crop": "the generator's chip box (--face-crop)", "align": "FFHQ alignment (--align)"}[framing]
    description = (
        f"{len(crops)} faces from {searched} of the {len(files)} photos in {folder} (by name), framed with {kind}"
        + (f", capped at {max_faces} faces" if max_faces is not None else "")
        + (f"; {photos_without_faces} photos without a face" if photos_without_faces else "")
    )
    return ImageSource(ids, description, lambda indices: stack[list(indices)])
