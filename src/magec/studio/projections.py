"""The studio's projections: magec's record of an inverted image (``magec.inversion.projection.Projection``,
subclassed) with what the page keeps beside it (the framed photo, the stage of a first look, a stopped pivotal
tuning), and the two-stage first look (the encoder's code at once, the chosen method's projection once its job
lands)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from magec.inversion.projection import Projection as InvertedImage
from magec.studio.jobs import CANCELLED, DONE, Job

if TYPE_CHECKING:
    from magec.studio.photos import FramedPhoto

#: The method name of the encoder's projection (as ``magec invert --method encoder``: the encoder's code alone),
#: and how the page names it.
INSTANT_METHOD, INSTANT_LABEL = "encoder", "instant (encoder)"


@dataclass
class Projection(InvertedImage):
    """One inverted photo: what the page renders slider values from (kept per browser session); ``source`` is
    the framed square the generator saw, ``tuned`` (``+pti``) renders it instead of the pipeline's generator."""

    #: The input, for pasting the edit back into its photo.
    framed: FramedPhoto | None = None
    #: Pivotal-tuning steps run (``+pti``; PTI may stop early once its LPIPS threshold is met).
    tuning_steps: int = 0
    #: True for the encoder's code (``Studio.instant_projection``), shown until the chosen method's lands.
    instant: bool = False
    #: True once its viewer's session ended (``Studio.end_session``): the tuned generator and photo are gone.
    released: bool = False
    #: True for a ``+pti`` projection whose pivotal tuning was stopped (cancelled): its latent is complete, the
    #: half-tuned generator was not kept (``tuned`` is None); ``Studio.finish_tuning`` or ``discard_tuning``.
    tuning_stopped: bool = False

    def release(self) -> None:
        """Drop the tuned generator and the photo (its viewer has gone); rendering it is then refused."""
        self.tuned, self.released = None, True
        if self.framed is not None:
            self.framed.release()

    @property
    def shown_as(self) -> str:
        """What the page calls this projection: ``instant (encoder)``, or the method's name."""
        return INSTANT_LABEL if self.instant else self.method


@dataclass
class FirstLook:
    """A photo seen in two stages: the encoder's projection at once, and the queued job of the chosen method
    whose projection replaces it once it lands (the slider values stay: only the latent changes)."""

    instant: Projection
    job: Job
    method: str

    @property
    def refined(self) -> Projection | None:
        """The method's projection once its job is done (or cancelled in its pivotal tuning: the latent is done,
        ``tuning_stopped``); None while it waits or runs, when it was cancelled during the latent's optimisation (a
        partly optimised latent is not better than the encoder's) or failed (``job.error`` says why)."""
        projection = (self.job.result or {}).get(self.method)
        if self.job.state == CANCELLED and projection is not None and projection.tuning_stopped:
            return projection  # the method's latent is complete: better than the encoder's, tuned or not
        return projection if self.job.state == DONE else None

    @property
    def current(self) -> Projection:
        """The projection to show now: the refined one when it has landed, else the encoder's."""
        return self.refined or self.instant
