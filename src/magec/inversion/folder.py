"""Whole folders for ``magec invert``: find the images, deal them into fixed batches, resume, invert one batch.

The same function, :func:`invert_batch`, runs in the plain process and in every Ray worker
(``magec.distributed``), so a run's per-image results do not depend on where a batch ran. Batches are
dealt once over the full, sorted list of readable images (finished ones included), so their composition
does not depend on the number of workers nor on what an interrupted run had finished; a batch is then
inverted again only if one of its images is not finished, and only the unfinished images are written.

An image is *finished* when its three outputs are recorded in the folder's index as belonging to its
input, exist, and its ``.json`` (written last) carries the same ``request`` (method, schedule, weights,
pack, seed, batch size, framing options): the request is what a rerun must match to skip the image.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magec.errors import MagecError, file_error
from magec.inversion.config import PTI_METHODS, PTI_SUFFIX, InversionConfig
from magec.io.image_files import IMAGE_SUFFIXES, folder_files, is_image_name, is_skipped_name
from magec.validation import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    import torch

    from magec.inversion.optimizer import StepCallback
    from magec.inversion.pti import PTIConfig
    from magec.pipeline import Pipeline

#: The files ``magec invert`` writes per input image; the ``.json`` is written last and marks it finished.
OUTPUT_SUFFIXES = (".latent.safetensors", ".png", ".json")


@dataclass(frozen=True)
class FramingOptions:
    """How each photo is framed before inversion: ``magec invert``'s ``--align`` / ``--face-crop`` (neither: the
    centred square), ``--face`` and ``--max-pixels``."""

    align: bool = False
    face_crop: bool = False
    face: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def framing(self) -> str:
        """The framing's name (``magec.faces.framing``): ``align``, ``face-crop`` or ``centre``."""
        return "align" if self.align else "face-crop" if self.face_crop else "centre"


@dataclass(frozen=True)
class FolderJob:
    """Everything a process needs to invert and write any batch of a run (small and picklable)."""

    out: str
    method: str
    config: InversionConfig
    seed: int
    framing: FramingOptions
    #: What a rerun must match to skip a finished image (also written into every output's metadata).
    request: dict[str, Any]
    #: Extra metadata for every output (e.g. the pack as given).
    settings: dict[str, Any] = field(default_factory=dict)
    #: Pivotal tuning for the ``+pti`` methods (None: PTI's published settings).
    pti: PTIConfig | None = None
    #: Where the optimisation starts (``--init``, resolved: ``mean``, ``encoder`` or an encoder file spec, which
    #: each process loads once, ``magec.inversion.starts.attach_encoder``); None: the method's own start.
    init: str | None = None


@dataclass(frozen=True)
class Item:
    """One input image: its output name (relative, no suffix) and its path as given."""

    name: str
    path: str


@dataclass
class BatchOutcome:
    """What became of one batch: finished names, and a one-line reason per failed name."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: Wall time of the whole task inside the worker (reading, inverting, writing), for overhead figures.
    worker_seconds: float = 0.0


@dataclass
class Inputs:
    """The inputs of a run: image files (sorted within each folder or glob), and what was left out."""

    files: list[Path]
    #: Files found in folders or globs that do not have an image suffix (reported, never fatal).
    not_images: list[Path]
    #: Paths given on the command line (not found by a folder or glob): these are checked strictly.
    explicit: set[Path]


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def collect_inputs(args: Sequence[str], exclude: Path | None = None) -> Inputs:
    """Expand files, folders (recursively) and glob patterns into image files.

    A folder gives its image files as ``magec.io.image_files.folder_files`` defines them (recursive, sorted by
    path, hidden names and anything under ``exclude``, the output folder, left out); a glob gives the files it
    matches and the files of the folders it matches. The other files they hold are listed in ``not_images``.
    A file named directly is kept whatever its suffix (it is checked, and refused if unreadable, later).
    """
    files: list[Path] = []
    not_images: list[Path] = []
    explicit: set[Path] = set()
    seen: set[Path] = set()
    skip = Path(os.path.abspath(exclude)) if exclude is not None else None

    def excluded(p: Path) -> bool:
        a = Path(os.path.abspath(p))
        return skip is not None and (a == skip or skip in a.parents)

    def add_found(candidates: Sequence[Path]) -> None:
        for p in sorted(candidates, key=lambda q: q.as_posix()):
            key = Path(os.path.abspath(p))
            if key in seen:
                continue
            seen.add(key)
            (files if is_image_name(p) else not_images).append(p)

    def in_folder(folder: Path) -> list[Path]:
        listing = folder_files(folder, () if exclude is None else (exclude,))
        return [*listing.images, *listing.others]

    for arg in args:
        path = Path(arg)
        if path.is_dir():
            add_found(in_folder(path))
        elif _is_glob(arg) and not path.exists():
            matches = [Path(m) for m in glob.glob(arg, recursive=True)]
            if not matches:
                raise file_error(arg, "no file matches this pattern")
            # glob itself leaves out the hidden names its pattern does not spell out
            found = [m for m in matches if m.is_file() and not is_skipped_name(m.name) and not excluded(m)]
            for m in matches:
                if m.is_dir() and not excluded(m):
                    found.extend(in_folder(m))
            add_found(found)
        else:
            files.append(path)  # checked (and refused with its name) by the caller, as before
            explicit.add(path)
            seen.add(Path(os.path.abspath(path)))
    if not files:
        raise MagecError(
            f"no images among the inputs ({', '.join(args)}); images are found by suffix: {', '.join(IMAGE_SUFFIXES)}"
        )
    return Inputs(files, not_images, explicit)


def deal_batches(items: Sequence[Item], batch_size: int) -> list[list[Item]]:
    """Consecutive batches of ``batch_size`` in input order: the same for any number of workers."""
    return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


def pending_batches(
    batches: Sequence[list[Item]], out_dir: Path, index: dict[str, str], request: dict[str, Any]
) -> list[tuple[list[Item], list[str]]]:
    """The batches with unfinished images, each with the names still to write (finished ones are not redone)."""
    todo = []
    for batch in batches:
        missing = [item.name for item in batch if not is_finished(out_dir, index, item, request)]
        if missing:
            todo.append((batch, missing))
    return todo


def pack_fingerprint(pack: str | None) -> str:
    """SHA-256 of a pack's manifest (which holds its tensors' hash), or "embedded" for the default pack."""
    if pack is None:
        return "embedded"
    manifest = Path(pack) / "manifest.json"
    try:
        return hashlib.sha256(manifest.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def output_claims(item: Item, method: str = "") -> dict[str, str]:
    """The files of ``item`` in the output index: relative name -> the input's absolute path (``+pti``
    methods also write the tuned generator, ``<name>.pti.safetensors``)."""
    source = str(Path(item.path).resolve())
    suffixes = OUTPUT_SUFFIXES + ((PTI_SUFFIX,) if method in PTI_METHODS else ())
    return {f"{item.name}{suffix}": source for suffix in suffixes}


def is_finished(out_dir: Path, index: dict[str, str], item: Item, request: dict[str, Any]) -> bool:
    """Are ``item``'s outputs in ``out_dir`` recorded as its own, present, and made with ``request``?"""
    claims = output_claims(item, str(request.get("method", "")))
    if any(index.get(name) != source or not (out_dir / name).is_file() for name, source in claims.items()):
        return False
    try:
        record = json.loads((out_dir / f"{item.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # damaged: done again
    return isinstance(record, dict) and record.get("request") == json.loads(json.dumps(request))


def read_framed(path: str | Path, size: int, framing: FramingOptions) -> tuple[torch.Tensor, dict[str, Any]]:
    """One input image as a (1, 3, size, size) tensor in [-1, 1], framed as ``framing`` says, and where its face
    sits in the photo (the ``framing`` name and the ``magec.faces.frame.FaceFrame`` as a dict, what
    ``magec edit --paste-back`` reads; empty for the centred square)."""
    from magec.io.images import load_image, pil_to_tensor

    if framing.framing == "centre":
        return load_image(path, size, framing.max_pixels), {}
    from magec.faces.framing import read_framed_photo

    framed = read_framed_photo(path, size, framing.framing, framing.face, framing.max_pixels, landmarks=False)
    return pil_to_tensor(framed.image), {"framing": framing.framing, **framed.frame.to_dict()}


def one_line(exc: BaseException) -> str:
    """An exception as one line (a MagecError already names its file)."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, MagecError) else f"{type(exc).__name__}: {text}"


def invert_batch(
    pipeline: Pipeline,
    job: FolderJob,
    batch: Sequence[Item],
    write: Sequence[str] | None = None,
    callback: StepCallback | None = None,
    images: dict[str, tuple[torch.Tensor, dict[str, Any]]] | None = None,
) -> BatchOutcome:
    """Invert one batch and write the outputs of the names in ``write`` (default: all) into ``job.out``.

    An image that cannot be read is recorded as failed and the rest are inverted together; an error during
    the optimisation fails the whole batch, an error writing one image fails that image. ``images`` may
    hold images already read (by name, as ``read_framed`` returns them). Every file is written atomically,
    the ``.json`` last.
    """
    import torch

    from magec.inversion.optimizer import invert
    from magec.inversion.outputs import write_inversion_outputs

    outcome = BatchOutcome()
    size = pipeline.generator.resolution
    ready: list[tuple[Item, torch.Tensor]] = []
    photos: dict[str, dict[str, Any]] = {}
    for item in batch:
        try:
            framed = images[item.name] if images and item.name in images else read_framed(item.path, size, job.framing)
            ready.append((item, framed[0]))
            photos[item.name] = framed[1]
        except Exception as exc:  # one image's failure is recorded, the batch goes on
            outcome.failed[item.name] = one_line(exc)
    if not ready:
        return outcome
    wanted = set(write) if write is not None else {item.name for item in batch}
    try:
        stack = torch.cat([t for _, t in ready])
        result = invert(pipeline, stack, job.method, job.config, seed=job.seed, callback=callback, pti=job.pti)
    except Exception as exc:  # reported per image at the end of the run
        from magec.memory import is_out_of_memory, out_of_memory_error

        # the batch is what the results depend on (and what a resumed run must repeat): not split, named
        reason = out_of_memory_error(len(ready), size, pipeline.device) if is_out_of_memory(exc) else exc
        for item, _ in ready:
            outcome.failed[item.name] = one_line(reason)
        return outcome
    outcome.seconds = result.seconds
    settings = {**pipeline.settings(), **job.settings, "request": job.request}
    chosen = [i for i, (item, _) in enumerate(ready) if item.name in wanted]
    if not chosen:
        return outcome
    names = [ready[i][0].name for i in chosen]
    try:
        write_inversion_outputs(
            job.out,
            names,
            stack[chosen],
            _select(result, chosen, len(ready)),
            settings,
            source_files=[ready[i][0].path for i in chosen],
            extra=[photos[ready[i][0].name] for i in chosen],
            base=pipeline.generator,
        )
        outcome.done.extend(names)
    except Exception as exc:  # an image whose .json is missing is simply done again
        for name in names:
            outcome.failed[name] = one_line(exc)
    return outcome


def _select(result: Any, indices: list[int], batch: int) -> Any:
    """The results of ``indices`` alone (all of them in a normal run; fewer when resuming a batch)."""
    from dataclasses import replace

    if len(indices) == batch:
        return result
    history = [
        {k: ([v[i] for i in indices] if isinstance(v, list) else v) for k, v in h.items()} for h in result.history
    ]
    return replace(
        result,
        latents=result.latents[indices],
        images=result.images[indices],
        noise=[n[indices] if n.shape[0] > 1 else n for n in result.noise] if result.noise is not None else None,
        history=history,
        seconds=result.seconds * len(indices) / batch,
        tuned=[result.tuned[i] for i in indices] if result.tuned is not None else None,
        start=result.start[indices] if getattr(result, "start", None) is not None else None,
    )


def request_of(**values: Any) -> dict[str, Any]:
    """A JSON-normal request dict (what ``is_finished`` compares)."""
    return json.loads(json.dumps(values, sort_keys=True, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return str(value)
