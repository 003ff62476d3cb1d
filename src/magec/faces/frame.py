"""Where a framed face's square sits in its photo: the geometry record every framing returns.

Framing a photo for a generator (``--face-crop`` or ``--align``, ``magec.faces.framing``) maps the generator's
square onto an oriented square of the photo: a similarity transform, recorded as a ``FaceFrame``. Pasting an
edit back (``magec.faces.paste``) runs it backwards; ``magec invert`` and the studio write it as a JSON record
(``origin``, ``u``, ``v``, ``photo_size``) that ``magec edit --paste-back`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from magec.errors import MagecError


@dataclass(frozen=True)
class FaceFrame:
    """Where a generator's square input sits in the photo: photo point = origin + s * u + t * v, for (s, t)
    in [0, 1]^2 over the square (s to the right, t down); pixel centres at +0.5 in both images."""

    origin: tuple[float, float]
    u: tuple[float, float]
    v: tuple[float, float]
    #: The photo's (width, height) when it was framed: pasting back needs the same photo.
    photo_size: tuple[int, int]

    @classmethod
    def from_quad(cls, quad: np.ndarray, photo_size: tuple[int, int]) -> FaceFrame:
        """From FFHQ's quad corners (top-left, bottom-left, bottom-right, top-right) in photo pixels."""
        q = np.asarray(quad, dtype=np.float64)
        return cls(tuple(q[0]), tuple(q[3] - q[0]), tuple(q[1] - q[0]), tuple(photo_size))

    def scaled(self, factor: float, photo_size: tuple[int, int]) -> FaceFrame:
        """The same square in a copy of the photo ``factor`` times larger (e.g. the full-size photo)."""
        mul = lambda p: (p[0] * factor, p[1] * factor)
        return FaceFrame(mul(self.origin), mul(self.u), mul(self.v), tuple(photo_size))

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        return {"origin": list(self.origin), "u": list(self.u), "v": list(self.v), "photo_size": list(self.photo_size)}

    @classmethod
    def from_dict(cls, data: dict) -> FaceFrame:
        try:
            return cls(
                tuple(float(x) for x in data["origin"]),
                tuple(float(x) for x in data["u"]),
                tuple(float(x) for x in data["v"]),
                tuple(int(x) for x in data["photo_size"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MagecError(f"broken framing record ({exc})") from None

    def square_corners(self) -> np.ndarray:
        o, u, v = (np.asarray(x) for x in (self.origin, self.u, self.v))
        return np.stack([o, o + u, o + u + v, o + v])
