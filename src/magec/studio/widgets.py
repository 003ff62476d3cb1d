"""What the studio page's handlers share: messages, the progress line, a viewer's id, rendered images for the page.

Plain functions over ``magec.studio.session`` (no Gradio import): the tabs (``magec.studio.app``) and the Editor's
photo inputs (``magec.studio.photo_inputs``) both use them.
"""

from __future__ import annotations

import html
from typing import Any

from PIL import Image

from magec.errors import MagecError
from magec.studio.jobs import QUEUED, Job
from magec.studio.photos import display
from magec.studio.session import Projection, Studio

#: How often a running inversion's progress is pushed to the page (seconds).
POLL_SECONDS = 0.25
#: The longest side of the pasted-back photo as shown in the page, 384 CSS pixels high (twice that on a
#: high-density screen); a larger photo is reduced by a whole factor. The download keeps the photo's resolution.
PASTED_DISPLAY_SIDE = 768


def message(exc: Exception) -> str:
    """One line for the page (a bug's type is named; never a traceback)."""
    text = str(exc) if isinstance(exc, MagecError) else f"unexpected {type(exc).__name__}: {exc}"
    return f"**Could not use this:** {html.escape(text)}"


def progress_html(job: Job | None, queue_ahead: int = 0, text: str = "") -> str:
    """The progress line: a job's bar and step, or ``text`` alone."""
    if job is None:
        return f"<div class='magec-progress'>{html.escape(text)}</div>"
    if job.state == QUEUED:
        line = f"waiting: {queue_ahead} inversion(s) ahead" if queue_ahead else "starting"
    else:
        line = f"{job.label}: step {job.step} of {job.total}"
    return (
        f"<div class='magec-progress'><progress value='{job.step}' max='{max(job.total, 1)}'></progress> "
        f"{html.escape(line)}</div>"
    )


def session_of(request: Any) -> str:
    """The viewer (browser session) a request comes from: the owner of its inversions."""
    return request.session_hash or "anonymous"


def pasted_photo(studio: Studio, projection: Projection, values: list[float]) -> Image.Image | None:
    """The edit pasted back into the uploaded photo, reduced for the page (None without a photo)."""
    return studio.pasted(projection, studio.slider_values(values), PASTED_DISPLAY_SIDE)


def rendered(studio: Studio, projection: Projection, values: list[float]) -> tuple[Image.Image, str]:
    """The edited image for the page and F's caption of it."""
    return edited_image(studio, projection, values), edited_caption(studio, projection, values)


def edited_image(studio: Studio, projection: Projection, values: list[float]) -> Image.Image:
    """The edited image for the page (drawn once: ``Studio.render`` keeps the last renders)."""
    return display(studio.render(projection, studio.slider_values(values)))


def edited_caption(studio: Studio, projection: Projection, values: list[float]) -> str:
    """F's caption of the edited image (drawn once: ``Studio.render`` keeps the last renders)."""
    return studio.captions(studio.render(projection, studio.slider_values(values)))[0]


def tuning_stopped_text(studio: Studio, projection: Projection) -> str:
    """What the page says of a ``+pti`` whose pivotal tuning was stopped: how far it got, and the two ways on."""
    return (
        f"{projection.method}: pivotal tuning stopped after {projection.tuning_steps} of {studio.tuning_steps} steps; "
        f"the latent is done. Finish the tuning (all {studio.tuning_steps} steps again, from this latent) or use "
        "the untuned latent."
    )


def projection_caption(studio: Studio, projection: Projection, caption: str) -> str:
    """F's caption of a projection, named (``instant (encoder): ...``, ``magec+pti: ...``) when the studio has an
    encoder, so the page says which projection is shown; unchanged without one."""
    return f"{projection.shown_as}: {caption}" if studio.has_encoder else caption
