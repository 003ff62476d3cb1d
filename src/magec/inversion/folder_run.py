"""A whole folder inverted from Python, as ``magec invert`` does it: :func:`invert_folder`.

Collects the inputs, gives each a unique output name, refuses outputs that would overwrite inputs or another
run's files, reads every image once before any model loads, skips the images an earlier run with the same
settings finished (``magec-index.json`` and each ``.json``'s request, see ``magec.inversion.folder``), inverts
the rest in fixed batches here or on workers, and records per-image failures without stopping the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magec.errors import MagecError
from magec.inversion.config import PTI_METHODS, method_config
from magec.inversion.folder import (
    BatchOutcome,
    FolderJob,
    FramingOptions,
    Inputs,
    Item,
    collect_inputs,
    deal_batches,
    one_line,
    output_claims,
    pack_fingerprint,
    pending_batches,
    request_of,
)
from magec.inversion.pack_checks import check_pack_attributes, check_pack_editor
from magec.inversion.starts import check_init, init_fingerprint
from magec.validation import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from magec.inversion.optimizer import StepCallback
    from magec.io.output_folder import OutputFolder

#: One pending batch: its items, and the names among them still to write.
Batch = tuple[list[Item], list[str]]
#: Inverts pending batches somewhere else, e.g. ``functools.partial(magec.distributed.runs.invert_on_workers,
#: options)``: called with the pipeline's arguments, the job, the batches, a per-batch report and a start hook.
BatchRunner = Callable[
    [dict[str, Any], FolderJob, list[Batch], Callable[[Batch, BatchOutcome], None], Callable[[Any], None]], None
]


@dataclass(frozen=True)
class FolderSettings:
    """How a folder is inverted (``magec invert``'s options, same names and defaults)."""

    method: str = "magec"
    #: The pack folder; None: the embedded default's (``resolve_pack`` of :func:`invert_folder`).
    pack: str | None = None
    #: Where the optimisation starts: mean | encoder | ENC.safetensors | e4e:PATH (None: the method's own).
    init: str | None = None
    batch_size: int = 8
    steps_scale: float = 1.0
    lambda_magec: float | None = None
    lambda_id: float | None = None
    attributes: tuple[str, ...] | None = None
    magec_editor: str = "interfacegan"
    perceptual: str = "auto"
    identity: str = "auto"
    describer: str | None = None
    align: bool = False
    face_crop: bool = False
    face: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: Write into a folder that holds other files than magec's.
    force: bool = False
    device: str = "auto"
    seed: int = 0
    precision: str = "fp32"

    def pipeline_args(self) -> dict[str, Any]:
        """The ``load_pipeline`` keyword arguments (also what workers load)."""
        return {
            "pack": self.pack,
            "device": self.device,
            "perceptual": self.perceptual,
            "identity": self.identity,
            "describer": self.describer,
            "precision": self.precision,
        }


@dataclass
class FolderSummary:
    """What a folder run did: images written now, finished before (skipped), and failed (input -> reason)."""

    out: Path
    total: int
    wrote: int = 0
    finished: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return f"inverted {self.wrote} images into {self.out} ({self.finished} already done, {len(self.failed)} failed)"


def invert_folder(
    images: Sequence[str | Path],
    out: str | Path,
    settings: FolderSettings | None = None,
    *,
    runner: BatchRunner | None = None,
    callback: StepCallback | None = None,
    resolve_pack: Callable[[], str] | None = None,
    say: Callable[[str], None] | None = None,
    show: Callable[[str], None] | None = None,
) -> FolderSummary:
    """Invert image files, folders (recursively) and glob patterns into ``out``; a rerun resumes.

    ``runner`` inverts the batches elsewhere (workers; None: in this process). ``callback`` sees every step of
    every batch run here (None: a terminal progress bar per batch). ``resolve_pack`` gives the pack folder when
    ``settings.pack`` is None, once the inputs were read (default: the embedded pack, prepared on first use).
    ``say`` gets one line per skipped or failed input, ``show`` one per written image and the summary.
    Raises ``MagecError`` after the run when some images failed (the others are written: a rerun retries only
    what is missing), and before anything loads for unusable inputs or settings.
    """
    s = settings or FolderSettings()
    say, show = say or _quiet, show or _quiet
    inputs = collect_inputs([str(i) for i in images], exclude=Path(out))
    if inputs.not_images:
        shown = ", ".join(str(p) for p in inputs.not_images[:3])
        more = f" and {len(inputs.not_images) - 3} more" if len(inputs.not_images) > 3 else ""
        say(f"skipped {len(inputs.not_images)} files that are not images (by suffix): {shown}{more}")
    from magec.io.output_folder import unique_output_names

    names = unique_output_names(inputs.files)
    if s.pack is not None:  # checked before anything else; the embedded pack is resolved after the inputs
        check_pack_editor(s.magec_editor, s.pack)
        check_pack_attributes(s.pack, s.attributes)
    config = method_config(
        s.method, s.steps_scale, lambda_magec=s.lambda_magec, lambda_id=s.lambda_id, magec_editor=s.magec_editor
    )
    if s.attributes:
        config = replace(config, attributes=s.attributes)
    init = check_init(s.init, s.method, s.pack)  # before any model loads
    if init != "mean" and config.start != "encoder":  # a paper method started from an encoder's code
        config = replace(config, start="encoder")
    folder, items, failed, readable = _open_and_read(inputs, names, out, s, say)
    if s.pack is None:
        from magec.prepare import embedded_pack_folder

        s = replace(s, pack=resolve_pack() if resolve_pack is not None else embedded_pack_folder(s.device))
        check_pack_editor(s.magec_editor, s.pack)
        check_pack_attributes(s.pack, s.attributes)
    job = _job(folder.path, s, config, init)
    todo = pending_batches(deal_batches(readable, s.batch_size), folder.path, folder.files, job.request)
    by_name = {item.name: item for item in items}
    summary = FolderSummary(folder.path, len(items), finished=len(readable) - sum(len(w) for _, w in todo))
    summary.failed = failed
    if summary.finished:
        say(f"{summary.finished} of {len(readable)} images already inverted with these settings: skipped")

    def report(batch: Batch, outcome: BatchOutcome) -> None:
        for name, reason in outcome.failed.items():
            path = by_name[name].path
            failed[path] = reason
            say(f"failed {reason if reason.startswith(path) else f'{path}: {reason}'}")
        summary.wrote += len(outcome.done)

    with folder.releasing():  # an early end (error, Ctrl-C, SIGTERM) withdraws the claims it did not write
        if todo and runner is None:
            _invert_here(s, job, todo, inputs.explicit, folder, report, callback, show)
        elif todo:
            _invert_elsewhere(runner, s, job, todo, by_name, folder, report)
        show(summary.line())
        if failed:
            raise MagecError(
                f"{len(failed)} of {len(items)} images failed (listed above); the others are written, "
                "and a rerun of the same command retries only what is missing"
            )
    return summary


def _quiet(_line: str) -> None:
    """Say nothing (a Python caller that passed no ``say`` / ``show``)."""


def _open_and_read(
    inputs: Inputs, names: list[str], out: str | Path, s: FolderSettings, say: Callable[[str], None]
) -> tuple[OutputFolder, list[Item], dict[str, str], list[Item]]:
    """Open the output folder, check the outputs' claims, and decode every input once (a named one that cannot
    be read is refused, one found in a folder is skipped), before any model loads."""
    from magec.io.images import read_image
    from magec.io.output_folder import OutputFolder, check_not_inputs

    folder = OutputFolder.open(out, "inversion", s.force)
    items = [Item(name, str(path)) for name, path in zip(names, inputs.files)]
    claims = {k: v for item in items for k, v in output_claims(item, s.method).items()}
    folder.check_claims(claims)
    check_not_inputs([folder.target(c) for c in claims], inputs.files)
    failed: dict[str, str] = {}  # input path -> reason
    readable = []
    for item in items:
        try:
            read_image(item.path, s.max_pixels, reduce_to=1024)
        except MagecError as exc:
            if Path(item.path) in inputs.explicit:
                raise
            failed[item.path] = one_line(exc)
            say(f"skipped {one_line(exc)}")
        else:
            readable.append(item)
    if not readable:
        raise MagecError(f"none of the {len(items)} images could be read (listed above)")
    return folder, items, failed, readable


def _job(out: Path, s: FolderSettings, config: Any, init: str) -> FolderJob:
    """The run's job: settings every process needs, and the request a rerun must match to skip an image."""
    assert s.pack is not None
    request = request_of(
        method=s.method,
        steps_scale=s.steps_scale,
        lambda_magec=s.lambda_magec,
        lambda_id=s.lambda_id,
        **({"attributes": list(s.attributes)} if s.attributes else {}),  # absent: older runs stay resumable
        **({"magec_editor": s.magec_editor} if s.magec_editor != "interfacegan" else {}),
        **({"precision": s.precision} if s.precision != "fp32" else {}),
        # the start, where it is not the paper's mean (absent: runs made before --init stay resumable)
        **({"init": init} if init != "mean" else {}),
        **({"init_sha256": digest} if (digest := init_fingerprint(init)) else {}),
        pack=str(Path(s.pack).resolve()),
        pack_manifest=pack_fingerprint(s.pack),
        perceptual=s.perceptual,
        identity=s.identity,
        describer=s.describer,
        seed=s.seed,
        batch_size=s.batch_size,
        align=s.align,
        face_crop=s.face_crop,
        face=s.face if (s.align or s.face_crop) else None,
    )
    from magec.inversion.pti import PTIConfig  # torch loads here, after every input was read

    settings = {"pack": s.pack, "seed": s.seed, "steps_scale": s.steps_scale, "magec_editor": s.magec_editor}
    return FolderJob(
        str(out),
        s.method,
        config,
        s.seed,
        FramingOptions(s.align, s.face_crop, s.face, s.max_pixels),
        request,
        {**settings, "init": init},
        pti=PTIConfig().scaled(s.steps_scale) if s.method in PTI_METHODS else None,
        init=init,
    )


def _invert_here(
    s: FolderSettings,
    job: FolderJob,
    todo: list[Batch],
    explicit: set[Path],
    folder: OutputFolder,
    report: Callable[[Batch, BatchOutcome], None],
    callback: StepCallback | None,
    show: Callable[[str], None],
) -> None:
    """The plain single-process run: named images are framed (and refused) before anything is written."""
    from magec.inversion.folder import invert_batch, read_framed
    from magec.inversion.progress import ProgressBar
    from magec.inversion.starts import attach_encoder, needs_start_encoder
    from magec.memory import check_inversion_batch
    from magec.pipeline import load_pipeline

    pipeline = attach_encoder(load_pipeline(**s.pipeline_args()), job.init)
    if needs_start_encoder(job):  # the pack's encoder, or the one --init named: checked before any inversion
        from magec.inversion.optimizer import require_encoder

        require_encoder(pipeline, job.method)
    size = pipeline.generator.resolution
    check_inversion_batch(pipeline.generator, max(len(batch) for batch, _ in todo), pipeline.device)
    framed = {
        item.name: read_framed(item.path, size, job.framing)
        for batch, _ in todo
        for item in batch
        if Path(item.path) in explicit
    }
    writes = [item for batch, write in todo for item in batch if item.name in write]
    folder.claim({k: v for item in writes for k, v in output_claims(item, s.method).items()})
    done = 0
    total = sum(len(write) for _, write in todo)
    for batch, write in todo:
        bar = ProgressBar(f"invert [{s.method}] {done + len(write)}/{total}") if callback is None else None
        try:
            outcome = invert_batch(pipeline, job, batch, write, callback=bar or callback, images=framed)
        finally:
            if bar is not None:
                bar.close()  # also when interrupted: the last line is then magec's own
        for name in outcome.done:
            show(f"wrote {folder.path / name}.{{latent.safetensors,png,json}}")
        report((batch, write), outcome)
        done += len(write)


def _invert_elsewhere(
    runner: BatchRunner,
    s: FolderSettings,
    job: FolderJob,
    todo: list[Batch],
    by_name: dict[str, Item],
    folder: OutputFolder,
    report: Callable[[Batch, BatchOutcome], None],
) -> None:
    """The batches on workers, with one bar over the images; the outputs are claimed once the workers are up."""
    from tqdm import tqdm

    bar = tqdm(total=sum(len(write) for _, write in todo), desc=f"invert [{s.method}]", unit="image", delay=0.5)

    def start(pool: Any) -> None:  # the workers are up: claim the outputs, then they write them
        folder.claim(
            {k: v for batch, write in todo for n in write for k, v in output_claims(by_name[n], s.method).items()}
        )
        bar.set_postfix_str(f"{len(pool.actors)} workers")

    def report_and_count(batch: Batch, outcome: BatchOutcome) -> None:
        report(batch, outcome)
        bar.update(len(outcome.done) + len(outcome.failed))

    try:
        runner(s.pipeline_args(), job, todo, report_and_count, start)
    finally:
        bar.close()
