"""What the studio page does, without the page: frame a photo, invert it in the queue, render slider values.

Everything here calls documented library functions (``frame_face``, ``invert``, ``render_latent``,
``save_latent``); the Gradio page (``magec.studio.app``) only wires these to widgets. Nothing the browser
sends is used as a path: an upload is accepted only when it lies inside the upload folder this process
created, and every file offered for download is written into the process's own temporary folder.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from magec import __version__
from magec.errors import MagecError
from magec.faces.crop import astronaut_face
from magec.faces.detection import DETECTION_SIDE
from magec.faces.framing import frame_face, framing_for
from magec.inversion import invert, method_config
from magec.inversion.config import PAPER_METHODS as METHODS
from magec.inversion.outputs import save_latent
from magec.io.images import pil_to_tensor, read_image, save_png, tensor_to_pil
from magec.pipeline import Pipeline
from magec.render import SliderValues, render_latent
from magec.studio.jobs import Job, JobQueue, queue_for

#: Upload limits of the page (the CLI's are larger: a page left running must not be easy to exhaust).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
#: Seeds of the "generated face" examples (far from the pack's sampling stream, like the demo's).
EXAMPLE_SEED = 20_000
#: Sliders per editor with many operations (GANSpace, SeFa, StyleFlow): the leading components.
LEADING_OPERATIONS = 5
#: Interpolation target offered as a slider.
INTERPOLATION_SAMPLE = "sample:777"


@dataclass(frozen=True)
class SliderSpec:
    """One slider of the page: an (editor, operation) pair and its range in the editor's units."""

    editor: str
    operation: str
    minimum: float
    maximum: float
    step: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.editor, self.operation)

    @property
    def label(self) -> str:
        return f"{self.editor}: {self.operation}"

    @property
    def elem_id(self) -> str:
        """A stable HTML id, e.g. ``slider-interfacegan-male``."""
        return "slider-" + re.sub(r"[^a-z0-9]+", "-", f"{self.editor}-{self.operation}".lower()).strip("-")


@dataclass
class Projection:
    """One inverted photo: what the page renders slider values from (kept per browser session)."""

    method: str
    latent: torch.Tensor
    space: str
    noise: list[torch.Tensor] | None
    source: torch.Tensor
    steps: int
    seconds: float
    stopped: bool
    notes: list[str] = field(default_factory=list)


def slider_specs(pipeline: Pipeline) -> list[SliderSpec]:
    """One slider per InterfaceGAN attribute, per leading GANSpace component, and for every other editor."""
    specs = []
    for name, editor in pipeline.pack.editors.items():
        if name == "interpolate":
            specs.append(SliderSpec(name, INTERPOLATION_SAMPLE, 0.0, 1.0, 0.05))
            continue
        operations = editor.operations()
        if name != "interfacegan":
            operations = operations[:LEADING_OPERATIONS]
        reach = round(2.0 * float(editor.default_amount), 2) or 1.0
        specs.extend(SliderSpec(name, op, -reach, reach, round(reach / 40, 3) or 0.01) for op in operations)
    return specs


class Studio:
    """The page's state shared by all viewers: one pipeline, its device's job queue, the upload rules."""

    def __init__(
        self,
        pipeline: Pipeline,
        steps_scale: float = 1.0,
        upload_root: Path | None = None,
        seed: int = 0,
        max_bytes: int = MAX_UPLOAD_BYTES,
        max_pixels: int = MAX_UPLOAD_PIXELS,
    ) -> None:
        self.pipeline = pipeline
        self.steps_scale = steps_scale
        self.seed = seed
        self.max_bytes, self.max_pixels = max_bytes, max_pixels
        self.queue: JobQueue = queue_for(str(pipeline.device))
        self.sliders = slider_specs(pipeline)
        self.framing = framing_for(pipeline.generator.spec)
        self._scratch = tempfile.TemporaryDirectory(prefix="magec-studio-")
        self.scratch = Path(self._scratch.name)
        self.upload_root = (upload_root or self.scratch).resolve()
        self._lock = threading.Lock()
        self._serial = 0

    @property
    def resolution(self) -> int:
        return self.pipeline.generator.resolution

    # -- inputs ---------------------------------------------------------------------------------
    def read_upload(self, path: str | Path) -> Image.Image:
        """An uploaded file, checked and framed; refuses anything outside the upload folder."""
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.upload_root):
            raise MagecError("refused: the upload did not come through this page")
        name = resolved.name
        size = resolved.stat().st_size if resolved.is_file() else 0
        if size > self.max_bytes:
            raise MagecError(
                f"{name}: {size / 2**20:.1f} MB, above the page's limit of {self.max_bytes / 2**20:.0f} MB"
            )
        try:
            photo = read_image(resolved, self.max_pixels, reduce_to=DETECTION_SIDE)
        except MagecError as exc:  # the message names the server's temporary path: name the file instead
            raise MagecError(str(exc).replace(str(resolved), name)) from None
        return self.frame(photo, name)

    def frame(self, photo: Image.Image, name: str = "photo") -> Image.Image:
        """``photo`` with its face framed for the generator (one clear line when there is no face)."""
        try:
            return frame_face(photo, self.resolution, self.framing)
        except MagecError as exc:
            raise MagecError(f"{name}: {exc}") from None

    def example(self, which: str, index: int = 0) -> Image.Image:
        """A bundled input: ``astronaut`` (scikit-image's photo, framed) or ``generated`` (an unseen face)."""
        if which == "astronaut":
            return astronaut_face(self.resolution) if self.framing == "chip-box" else self.frame(_astronaut())
        if which == "generated":
            gen = self.pipeline.generator
            with torch.no_grad():
                image = gen.synthesize(gen.sample_latents(1, EXAMPLE_SEED + index))
            return tensor_to_pil(image[0])
        raise MagecError(f"unknown example {which!r}")

    # -- inversion ------------------------------------------------------------------------------
    def submit(self, owner: str, photo: Image.Image, methods: tuple[str, ...]) -> Job:
        """Queue the inversion of ``photo`` with each of ``methods`` (results: method -> Projection)."""
        for method in methods:
            if method not in METHODS:
                raise MagecError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
        source = pil_to_tensor(photo.convert("RGB"))
        configs = {m: method_config(m, self.steps_scale) for m in methods}
        total = sum(c.total_steps for c in configs.values())

        def work(job: Job) -> dict[str, Projection]:
            done, results = 0, {}
            for method, config in configs.items():
                offset = done

                def callback(info: Any, offset: int = offset, method: str = method) -> bool:
                    return job.report(offset + info.step + 1, total, method)

                job.report(done, total, method)
                res = invert(self.pipeline, source, method, config, self.seed, callback)
                results[method] = Projection(
                    method,
                    res.latents.cpu(),
                    res.space,
                    [n.cpu() for n in res.noise] if res.noise is not None else None,
                    source,
                    res.steps,
                    res.seconds,
                    res.stopped,
                    res.notes,
                )
                done += config.total_steps
                if job.cancelled:
                    break
            return results

        return self.queue.submit(owner, work)

    def cancel(self, owner: str) -> int:
        return self.queue.cancel(owner)

    # -- rendering ------------------------------------------------------------------------------
    def slider_values(self, values: list[float]) -> dict[tuple[str, str], float]:
        """Slider positions (in ``self.sliders`` order) as the ``render_latent`` mapping; non-finite ones refused."""
        if len(values) != len(self.sliders):
            raise MagecError(f"expected {len(self.sliders)} slider values, got {len(values)}")
        out = {}
        for spec, value in zip(self.sliders, values):
            value = float(value or 0.0)
            if not spec.minimum <= value <= spec.maximum:
                raise MagecError(f"{spec.label}: {value} outside [{spec.minimum}, {spec.maximum}]")
            out[spec.key] = value
        return out

    def render(self, projection: Projection, values: SliderValues) -> torch.Tensor:
        """The edited image (1, 3, R, R) of a projection at the given slider values."""
        return render_latent(self.pipeline, projection.latent, projection.space, projection.noise, values).cpu()

    def captions(self, images: torch.Tensor) -> list[str]:
        """F's predictions for each image (B, 3, R, R), one line each (e.g. ``male 0.93, age 31``)."""
        with torch.no_grad():
            probs = self.pipeline.describer(images.to(self.pipeline.device))
        return self.pipeline.describer.layout.captions(probs, sep=", ")

    def projection_image(self, projection: Projection) -> torch.Tensor:
        return self.render(projection, {})

    # -- downloads ------------------------------------------------------------------------------
    def downloads(self, projection: Projection, values: SliderValues) -> list[Path]:
        """Edited PNG, the latent (``.latent.safetensors``, what ``magec edit`` reads) and the settings JSON."""
        with self._lock:
            self._serial += 1
            folder = self.scratch / "downloads" / str(self._serial)
        folder.mkdir(parents=True)
        stem = f"studio-{projection.method}"
        edits = [{"editor": e, "operation": o, "amount": a} for (e, o), a in values.items() if a != 0]
        settings = {
            "magec_version": __version__,
            **self.pipeline.settings(),
            "method": projection.method,
            "steps": projection.steps,
            "steps_scale": self.steps_scale,
            "seed": self.seed,
            "stopped_early": projection.stopped,
            "framing": self.framing,
            "edits": edits,
        }
        png = save_png(self.render(projection, values)[0], folder / f"{stem}-edited.png")
        latent = save_latent(
            folder / f"{stem}.latent.safetensors",
            projection.latent,
            projection.space,
            projection.noise,
            projection.source[0],
            {"method": projection.method, "source_name": "studio upload", **self.pipeline.settings()},
        )
        (folder / f"{stem}-settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        return [png, latent, folder / f"{stem}-settings.json"]

    def close(self) -> None:
        self._scratch.cleanup()


def _astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def display(image: torch.Tensor | Image.Image, side: int = 256) -> Image.Image:
    """An image for the page: small generator outputs are enlarged with square pixels (nothing invented)."""
    pil = image if isinstance(image, Image.Image) else tensor_to_pil(image)
    if pil.width >= side:
        return pil
    factor = max(1, side // pil.width)
    return pil.resize((pil.width * factor, pil.height * factor), Image.Resampling.NEAREST)
