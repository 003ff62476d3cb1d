"""Edits of one inverted image written to a folder, as ``magec edit`` does it: :func:`edit_latent_file`.

Reads a latent file (``magec invert``'s or the studio's) and the generator tuned for it, checks both against the
pack before rendering anything, writes one PNG per edit and a grid, and optionally pastes every edit back into
the photo the latent was inverted from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from magec.errors import MagecError
from magec.latent.kinds import TARGET
from magec.validation import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    import torch

    from magec.faces.frame import FaceFrame
    from magec.inversion.projection import Projection
    from magec.pipeline import Pipeline
    from magec.render import Edit


@dataclass(frozen=True)
class EditSettings:
    """What ``magec edit`` does with a latent (its options, same defaults)."""

    #: One of the pack's editors, or ``boundary:FILE.npy`` (a direction file: InterfaceGAN's format).
    editor: str = "interfacegan"
    #: The operations (None: every attribute for interfacegan / styleflow, else the first four).
    operations: Sequence[str] | None = None
    #: The edit amounts (None: symmetric steps up to the editor's default).
    amounts: Sequence[float] | None = None
    #: The pack folder (None: the embedded default's).
    pack: str | None = None
    #: The photo the latent was inverted from (with --align or --face-crop): paste every edit back into it.
    paste_back: str | None = None
    paste_mode: str = "sharp"
    #: For a ``+pti`` latent: edit with the untuned generator, ignoring the tuned one beside it.
    untuned: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    force: bool = False
    device: str = "auto"
    seed: int = 0
    precision: str = "fp32"


def pasted_name(name: str) -> str:
    """``interfacegan_male_+3.00.png`` -> ``interfacegan_male_+3.00.pasted.png``."""
    return name[: -len(".png")] + ".pasted.png"


def edit_latent_file(
    latent: str | Path,
    out: str | Path,
    settings: EditSettings | None = None,
    *,
    resolve_pack: Callable[[], str] | None = None,
    say: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the edits of the latent file ``latent`` into the folder ``out``; returns the files written.

    The latent, its tuned generator (``+pti``), a direction file and the photo to paste into are checked before
    any model loads or anything is written. ``resolve_pack`` gives the pack folder when ``settings.pack`` is None
    (default: the embedded pack); ``say`` gets one line when edits go past the pack's measured useful range.
    """
    from magec.io.output_folder import OutputFolder

    s = settings or EditSettings()
    folder = OutputFolder.open(out, "edits", s.force)
    if s.editor.startswith("boundary:"):  # sized from its header, before torch and the models load
        from magec.io.arrays import npy_header

        npy_header(s.editor.partition(":")[2])
    from magec.inversion.outputs import check_latent_fits, check_tuned_pair, load_latent

    saved = load_latent(latent)
    delta = check_tuned_pair(latent, s.untuned)  # a +pti latent's tuned generator, checked before models load
    from magec.pipeline import load_pipeline

    if s.pack is None:
        from magec.prepare import embedded_pack_folder

        s = replace(s, pack=resolve_pack() if resolve_pack is not None else embedded_pack_folder(s.device))
    pipeline = load_pipeline(s.pack, s.device, perceptual="describer-features", precision=s.precision)
    check_latent_fits(saved, pipeline.generator, latent)
    pipeline, editor = _with_editor(pipeline, s)
    if delta is not None:  # a +pti inversion: edits are rendered with the generator tuned for this photo
        from magec.generators.delta import apply_delta

        saved.tuned = apply_delta(pipeline.generator, delta)
        pipeline = saved.drawn_by(pipeline)
    operations, amounts = _operations(pipeline, editor, s, say)
    from magec.render import planned_edit_files

    planned = planned_edit_files(editor, operations, amounts)
    framing = None
    if s.paste_back:
        framing = _photo_framing(saved, latent, s)
        planned += [pasted_name(n) for n in planned if n != "grid.png"] + [pasted_name("projection.png")]
    with folder.releasing():  # an early end withdraws the claims it did not write
        folder.claim({name: str(Path(latent).resolve()) for name in planned})
        return _write(pipeline, saved, editor, operations, amounts, folder.path, latent, s, framing)


def _with_editor(pipeline: Pipeline, s: EditSettings) -> tuple[Pipeline, str]:
    """The pipeline (with a direction file's editor added: the pack is left as is) and the editor's name; an
    editor the pack lacks refused in one line."""
    editor = s.editor
    if editor.startswith("boundary:"):
        from magec.latent.boundaries import load_direction

        boundary = load_direction(editor.partition(":")[2], pipeline.generator.latent_dim)
        pipeline = replace(pipeline, editors={**pipeline.editors, "boundary": boundary})
        editor = "boundary"
    if editor not in pipeline.editors:
        raise MagecError(f"{s.pack}: this pack has no {editor} editor (has: {', '.join(pipeline.editors)})")
    return pipeline, editor


def _operations(
    pipeline: Pipeline, editor: str, s: EditSettings, say: Callable[[str], None] | None
) -> tuple[list[str], list[float]]:
    """The operations and amounts (the editor's defaults where not given); unknown operations refused."""
    from magec.render import default_amounts, default_operations

    chosen = pipeline.editors[editor]
    operations = list(s.operations or default_operations(pipeline, editor, seed=s.seed))
    if chosen.traits.family != TARGET:  # a target editor's operations are "sample:<seed>", not listed
        unknown = [op for op in operations if op not in chosen.operations()]
        if unknown:
            raise MagecError(f"--operation {unknown[0]!r}: {editor} offers {', '.join(chosen.operations())}")
    amounts = list(s.amounts or default_amounts(pipeline, editor))
    if editor != "boundary" and say is not None and (note := beyond_range_note(pipeline, editor, operations, amounts)):
        say(note)
    return operations, amounts


def _photo_framing(saved: Projection, latent: str | Path, s: EditSettings) -> FaceFrame:
    """Where the face sits in the photo to paste into, refused when the latent has no framing or the photo is not
    the one that was inverted (checked by its size)."""
    from magec.faces.frame import FaceFrame
    from magec.io.images import image_size

    if not saved.photo:
        raise MagecError(f"{latent}: --paste-back needs a latent inverted with --align or --face-crop")
    framing = FaceFrame.from_dict(saved.photo)
    assert s.paste_back is not None
    if tuple(image_size(s.paste_back, s.max_pixels)) != tuple(framing.photo_size):
        raise MagecError(
            f"{s.paste_back}: not the photo that was inverted (it was {framing.photo_size[0]}x{framing.photo_size[1]})"
        )
    return framing


def _write(
    pipeline: Pipeline,
    saved: Projection,
    editor: str,
    operations: list[str],
    amounts: list[float],
    out: Path,
    latent: str | Path,
    s: EditSettings,
    framing: FaceFrame | None,
) -> list[Path]:
    """Render and write the edits, the grid and (with a framing) every edit pasted back into the photo."""
    from magec.render import apply_edits, render_latent, write_edits

    rows = apply_edits(pipeline, saved.latent, saved.space, saved.noise, editor, operations, amounts)
    projection = render_latent(pipeline, saved.latent, saved.space, saved.noise, {})[0]
    name, method = saved.metadata.get("source_name", latent), saved.metadata.get("method", "?")
    title = f"{editor} edits of {name} ({method} projection)"
    source = saved.source[0] if saved.source is not None else None
    written = write_edits(out, rows, source, projection.detach(), title)
    if framing is not None:
        written += _paste_back(rows, projection, out, s, framing)
    return written


def _paste_back(
    rows: list[list[Edit]], projection: torch.Tensor, out: Path, s: EditSettings, framing: FaceFrame
) -> list[Path]:
    """Every edit and the projection pasted back into the photo (``<edit>.pasted.png``)."""
    from magec.faces.paste import paste_into_photo
    from magec.io.images import save_png, tensor_to_pil
    from magec.render import edit_file_name

    crops = {pasted_name(edit_file_name(e.editor, e.operation, e.amount)): e.image for row in rows for e in row}
    crops[pasted_name("projection.png")] = projection
    assert s.paste_back is not None
    pasted = paste_into_photo(
        s.paste_back,
        [tensor_to_pil(c) for c in crops.values()],
        framing,
        s.max_pixels,
        projection=tensor_to_pil(projection),
        mode=s.paste_mode,
    )
    return [save_png(img, out / name) for name, img in zip(crops, pasted)]


def beyond_range_note(pipeline: Pipeline, editor: str, operations: list[str], amounts: list[float]) -> str | None:
    """One line when some edits go past the useful range the pack measured (the studio's slider ends), else None."""
    from magec.render import slider_specs

    specs = {s.key: s for s in slider_specs(pipeline) if s.measured}
    beyond = [(s, a) for op in operations if (s := specs.get((editor, op))) for a in amounts if not s.covers(a)]
    if not beyond:
        return None
    spec, amount = beyond[0]
    return (
        f"note: {len(beyond)} of the edits go past the pack's measured useful range, e.g. {spec.operation} "
        f"{amount:+g} (its range: {spec.minimum:+g} to {spec.maximum:+g}); faces may break there"
    )
