"""One inverted image, as every part of magec keeps it: :class:`Projection`, and its one writer.

``invert`` returns a batch (``InversionResult``); ``InversionResult.projection(i)`` is image ``i``'s record,
``magec.inversion.outputs.load_latent`` reads one back from its file, and the studio keeps one per photo. Its
files are written by ``magec.inversion.outputs.save_projection`` alone (``magec invert`` and the studio's
downloads), so a latent and the generator tuned for it always come as the same pair, which ``magec edit`` checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from magec.generators.base import Generator
    from magec.pipeline import Pipeline


@dataclass
class Projection:
    """One inverted image: its code, noise maps and (``+pti``) the generator tuned for it, with what made it."""

    #: The method that made it (``magec``, ``magec+pti``, ``encoder``...).
    method: str
    #: The code, (1, *space shape).
    latent: torch.Tensor
    #: The space the code lives in ("z", "w" or "w+").
    space: str
    #: Optimised noise maps, one (1, 1, H, W) tensor per layer, or None when noise was not optimised.
    noise: list[torch.Tensor] | None = None
    #: The image that was inverted, (1, 3, R, R) in [-1, 1] (None: a latent file written without it).
    source: torch.Tensor | None = None
    #: Optimisation steps run, their wall time (for the whole batch it ran in), and whether a callback stopped it.
    steps: int = 0
    seconds: float = 0.0
    stopped: bool = False
    notes: list[str] = field(default_factory=list)
    #: For ``+pti``: the generator tuned around this latent (renders use it instead of the pipeline's).
    tuned: Generator | None = None
    #: Where the face sits in its photo (``{"framing": "align" | "face-crop", **magec.faces.frame.FaceFrame}``), which
    #: ``magec edit --paste-back`` reads; None for a plain centre square or an image that was not a photo.
    photo: dict[str, Any] | None = None
    #: Everything recorded with it in its latent file (settings, source name, request...).
    metadata: dict[str, Any] = field(default_factory=dict)

    def drawn_by(self, pipeline: Pipeline) -> Pipeline:
        """``pipeline`` drawing with this projection's tuned generator (``+pti``), or ``pipeline`` itself."""
        return pipeline.with_generator(self.tuned)
