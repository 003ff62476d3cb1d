"""Where evaluated images come from: a folder of the user's images, or fresh generator samples.

Images are loaded one chunk at a time, so an evaluation of many high-resolution photos never holds
them all in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from magec import validation
from magec.errors import MagecError, file_error
from magec.io.image_files import IMAGE_SUFFIXES, folder_files
from magec.io.images import load_image
from magec.memory import chunk_size, map_chunks, synthesis_bytes
from magec.validation import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from magec.evaluation.paste_back import PhotoFace

#: Offset added to the user's seed for generated evaluation inputs, and for generated reference samples,
#: so neither coincides with samples drawn from small seeds elsewhere (e.g. when a pack is prepared).
GENERATED_SEED_OFFSET = 7_000_003
REFERENCE_SEED_OFFSET = 9_000_011


@dataclass
class ImageSource:
    """Named images: ``ids[i]`` is a stable key, ``load(indices)`` returns them as (B, 3, R, R) in [-1, 1].

    ``locate(indices)``, for faces cut from photos: each face in its photo (what pasting an edit back needs),
    found again on demand so that a long run never holds every photo in memory; None for other sources."""

    ids: list[str]
    description: str
    _load: Callable[[Sequence[int]], torch.Tensor] = field(repr=False)
    _locate: Callable[[Sequence[int]], list[PhotoFace]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        return self._load(indices)

    @property
    def has_photos(self) -> bool:
        return self._locate is not None

    def locate(self, indices: Sequence[int]) -> list[PhotoFace]:
        if self._locate is None:
            raise MagecError(f"{self.description}: not faces cut from photos, so there is no photo to paste into")
        return self._locate(indices)


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
    origins: list[tuple[Path, int]] = []  # (photo, face index) of each crop
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
            origins.append((path, k))
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

    def locate(indices: Sequence[int]) -> list[PhotoFace]:
        return _photo_faces([origins[i] for i in indices], resolution, framing, max_pixels)

    return ImageSource(ids, description, lambda indices: stack[list(indices)], locate)


@dataclass(frozen=True)
class SourceSpec:
    """Where a run's images come from and how they are framed, as plain values, checked once.

    The driver and every worker process build their ``ImageSource`` from the same spec (``build``), so each
    lists the same images under the same ids, in the same order: a folder's files (centre-cropped), every face
    dlib finds in them (``framing``: ``"face-crop"`` or ``"align"``, as the options of that name; each process
    searches the photos itself, and the search is deterministic), or ``generated`` fresh generator samples.
    """

    folder: Path | None = None
    generated: int | None = None
    #: At most this many files of ``folder``.
    limit: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: Folders never listed as inputs, wherever they are (the run's own outputs).
    exclude: tuple[str, ...] = ()
    #: None: the whole image, centre-cropped; "face-crop" or "align": every face, framed so.
    framing: str | None = None
    #: With ``framing``: at most this many faces in all.
    max_faces: int | None = None

    def __post_init__(self) -> None:
        if (self.folder is None) == (self.generated is None):
            raise MagecError("the evaluated images come from one place: a folder (--images) or --generated N")
        if self.framing is not None:
            from magec.faces.framing import FRAMINGS

            if self.folder is None:
                raise MagecError("--face-crop/--align need --images (a folder of photos)")
            validation.choice("framing", self.framing, FRAMINGS)
        object.__setattr__(self, "exclude", tuple(str(e) for e in self.exclude))

    def build(self, generator, seed: int) -> ImageSource:
        """The images, at ``generator``'s resolution (``seed``: the run's, for generated samples)."""
        if self.folder is None:
            return generated_source(generator, self.generated, seed)
        res = generator.resolution
        if self.framing is not None:
            return faces_source(
                self.folder, res, self.framing, self.limit, self.max_faces, self.max_pixels, self.exclude
            )
        return folder_source(self.folder, res, self.limit, self.max_pixels, self.exclude)


def _photo_faces(
    origins: Sequence[tuple[Path, int]], resolution: int, framing: str, max_pixels: int
) -> list[PhotoFace]:
    """Each (photo, face index) as a ``PhotoFace``: the photo read as ``faces_source`` read it, searched once per
    photo (dlib's 68 landmarks), the face framed for the generator, and its landmarks for the paste mask."""
    from magec.evaluation.paste_back import PhotoFace
    from magec.faces.detection import DETECTION_SIDE, LandmarkDetector
    from magec.faces.framing import frame_face_located
    from magec.faces.paste import located_face_landmarks
    from magec.io.images import read_image

    detector = LandmarkDetector()  # as both framings detect (upsampling once)
    found: dict[Path, tuple] = {}
    located = []
    for path, k in origins:
        if path not in found:
            photo = read_image(path, max_pixels, reduce_to=DETECTION_SIDE)
            found[path] = (photo, detector.detect(photo))
        photo, faces = found[path]
        _, where = frame_face_located(photo, resolution, framing, k, faces)
        landmarks, _ = located_face_landmarks(photo, where, faces=faces)
        located.append(PhotoFace(photo, where, landmarks))
    return located
