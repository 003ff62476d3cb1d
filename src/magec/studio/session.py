"""What the studio page does, without the page: frame a photo, invert it in the queue, render slider values.

With an encoder in the pipeline (``Pipeline.encoder``) a photo is seen in two stages: the encoder's code at once
(``Studio.instant_projection``: one forward pass, in the caller's thread, never queued), then the chosen method's
optimisation in the queue (``Studio.refine``), whose projection replaces it when it lands (``FirstLook``).

Everything here calls documented library functions (``frame_face_located``, ``invert``, ``render_latent``,
``paste_back``, ``save_projection``); the Gradio page (``magec.studio.app``) only wires these to widgets. Nothing
the browser sends is used as a path: an upload is accepted only when it lies inside the upload folder this
process created (the photo is then kept in memory), and every file offered for download is written into the
process's own temporary folder.

A viewer's session ends with ``Studio.end_session`` (the page's unload): its jobs stop, and the photos, projections
and tuned generators made for it (recorded per viewer, weakly) are released even though the web framework may keep
its page state a while. A ``+pti`` cancelled in its pivotal tuning keeps its latent (``Projection.tuning_stopped``):
``Studio.finish_tuning`` tunes it again, ``Studio.discard_tuning`` keeps the untuned latent.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from magec import __version__
from magec.errors import MagecError
from magec.faces.detection import SharedDetector
from magec.faces.framing import frame_face_located, framing_for, read_framed_photo
from magec.faces.paste import located_face_landmarks, paste_edit
from magec.inversion import invert, method_config
from magec.inversion.config import MEAN_PTI_METHODS, PAPER_METHODS, PTI_METHODS, base_method
from magec.inversion.outputs import save_projection
from magec.inversion.pti import PTIConfig, pivotal_tuning
from magec.io.images import pil_to_tensor, read_image, save_png, tensor_to_pil
from magec.pipeline import Pipeline
from magec.render import SliderValues, render_latent, slider_specs
from magec.studio.jobs import Job, JobQueue, step_timer
from magec.studio.photos import FramedPhoto, astronaut_photo
from magec.studio.projections import INSTANT_LABEL as INSTANT_LABEL  # the page's names, from where they live
from magec.studio.projections import INSTANT_METHOD, FirstLook, Projection
from magec.studio.uploads_ahead import FramingAhead, file_key

#: Upload limits of the page (the CLI's are larger: a page left running must not be easy to exhaust).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
#: Seeds of the "generated face" examples (far from the pack's sampling stream, like the demo's).
EXAMPLE_SEED = 20_000
#: The page's methods: the paper's three, and the two followed by pivotal tuning (the study keeps the paper's).
METHODS = (*PAPER_METHODS, *MEAN_PTI_METHODS)
#: How many renders the studio keeps (``Studio.render``): per viewer, the unedited image and the last edit are
#: what a slider change reuses; a few viewers fit.
RENDER_CACHE = 8


class Studio:
    """The page's state shared by all viewers: one pipeline, its own job queue, the upload rules.

    The queue belongs to this studio (never to the process): closing one studio cannot leave a later one with a
    dead queue whose inversions wait forever."""

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
        self.queue = JobQueue(str(pipeline.device))
        self.sliders = slider_specs(pipeline)
        self.framing = framing_for(pipeline.generator.spec)
        self._scratch = tempfile.TemporaryDirectory(prefix="magec-studio-")
        self.scratch = Path(self._scratch.name)
        self.upload_root = (upload_root or self.scratch).resolve()
        self._lock = threading.Lock()
        self._serial = 0
        #: Seconds per step, per method and schedule part (phase number, or "generator" for PTI's tuning),
        #: measured on this studio's device: by ``estimate_seconds`` once, then by every finished inversion.
        self._step_seconds: dict[str, dict[str, float]] = {}
        #: dlib's detector and landmark models, read at the first photo or in the background (``warm_up``)
        #: and kept; viewers take turns with them (dlib's objects are not documented as thread-safe).
        self._faces = SharedDetector()
        #: Per viewer, what this studio made for it (photos, projections; weak: never kept alive from here) and the
        #: download folders it wrote: ``end_session`` releases and deletes them. ``_ended``: viewers gone while a
        #: job of theirs still ran (what that job makes is released as it is made).
        self._owned: dict[str, weakref.WeakValueDictionary[int, Any]] = {}
        self._download_dirs: dict[str, list[Path]] = {}
        self._ended: set[str] = set()
        #: The last few renders (``_cached_render``): a slider change draws the edit once for the edited square and
        #: the pasted photo, and the unedited image a paste subtracts is drawn once per projection.
        self._renders: OrderedDict[tuple, tuple[weakref.ref, Any]] = OrderedDict()
        #: Uploads being framed as they arrived (``prepare_upload``), until the page's request takes them.
        self._ahead = FramingAhead()
        if pipeline.encoder is not None:  # refused at start, in one line, rather than at the first upload
            pipeline.encoder.check_generator(pipeline.generator)

    @property
    def has_encoder(self) -> bool:
        """True when uploads get the instant first look (the pipeline has an encoder)."""
        return self.pipeline.encoder is not None

    @property
    def resolution(self) -> int:
        return self.pipeline.generator.resolution

    # -- inputs ---------------------------------------------------------------------------------
    def read_upload(self, path: str | Path, face: int = 0, owner: str | None = None) -> FramedPhoto:
        """An uploaded file, checked and framed (``face``: which face, 0 the largest); refuses anything outside
        the upload folder. ``owner``: the viewer it belongs to (its photo is let go when that session ends).
        The framing ``prepare_upload`` started for this very file is used when there is one."""
        resolved = self._in_uploads(path)
        if resolved is None:
            raise MagecError("refused: the upload did not come through this page")
        prepared = self._ahead.take(resolved)
        if prepared is not None and face == 0:
            return self._own(owner, prepared.result())
        return self._own(owner, self._frame_upload(resolved, face))

    def prepare_upload(self, path: str | Path) -> None:
        """Start framing an upload's largest face in the background as soon as the file has arrived: the page's
        request to frame it comes ~100 ms later (the browser handles the upload's answer first), and
        ``read_upload`` takes this framing then. Files outside the upload folder are ignored."""
        resolved = self._in_uploads(path)
        key = file_key(resolved) if resolved is not None else None
        if resolved is not None and key is not None and key[0] <= self.max_bytes:
            self._ahead.start(resolved, key, lambda: self._frame_ahead(resolved))

    def _frame_ahead(self, resolved: Path) -> FramedPhoto:
        """Frame an upload's largest face and, with an encoder, make its first look and draw it too, so that the
        page's request only sends them (``instant_projection`` takes the look)."""
        framed = self._frame_upload(resolved, 0)
        if self.has_encoder:
            try:
                look = self._encoded(framed)
                self.projection_image(look)  # drawn now: the request's render finds it in the cache
                self._ahead.keep_look(framed, look)
            except Exception:  # noqa: BLE001 - the request's own instant_projection says what is wrong
                pass
        return framed

    def _frame_upload(self, resolved: Path, face: int) -> FramedPhoto:
        """Check an uploaded file's size, read and frame it (no owner yet)."""
        name = resolved.name
        size = resolved.stat().st_size if resolved.is_file() else 0
        if size > self.max_bytes:
            raise MagecError(
                f"{name}: {size / 2**20:.1f} MB, above the page's limit of {self.max_bytes / 2**20:.0f} MB"
            )
        try:
            found = read_framed_photo(
                resolved, self.resolution, self.framing, face, self.max_pixels, self._faces, limit_option=""
            )
            # a large JPEG was decoded reduced to find the face: the whole photo, for pasting back
            photo = found.photo if found.scale == 1.0 else read_image(resolved, self.max_pixels, limit_option="")
        except MagecError as exc:  # the message names the server's temporary path: name the file instead
            raise MagecError(str(exc).replace(str(resolved), name)) from None
        return FramedPhoto(found.image, photo, found.frame, found.landmarks, faces=len(found.faces or ()), face=face)

    def warm_up(self) -> None:
        """Start reading dlib's face models (2-3 s) and, with an encoder, then take the astronaut example through
        the first look once (detection, encoder, drawing, F), all in the background, so that the first photo
        pays none of it (``serve`` calls it as the page starts)."""
        self._faces.preload()
        if self.has_encoder:
            self._ahead.run(self._first_look_once)

    def _first_look_once(self) -> None:
        try:
            look = self._encoded(self.example("astronaut"))
            self.captions(torch.cat([look.source, self.projection_image(look)]))
        except Exception:  # noqa: BLE001 - a warm-up only; the first photo says what is wrong
            pass

    def discard_upload(self, path: str | Path | None) -> None:
        """Delete an uploaded file once it has been read (only inside this studio's upload folder: never
        anything else); the decoded photo stays in the viewer's state."""
        resolved = self._in_uploads(path) if path else None
        if resolved is not None and resolved != self.upload_root:
            self._ahead.take(resolved)
            if resolved.is_file():
                resolved.unlink(missing_ok=True)

    def _in_uploads(self, path: str | Path) -> Path | None:
        """``path`` resolved, when it lies in this studio's upload folder (else None: not the page's file)."""
        resolved = Path(path).resolve()
        return resolved if resolved.is_relative_to(self.upload_root) else None

    def frame(self, photo: Image.Image, name: str = "photo", face: int = 0, owner: str | None = None) -> FramedPhoto:
        """``photo`` with one face framed for the generator (``face``: 0 the largest, 1 the next...; one clear
        line when there is none), kept with the photo, where the face's square sits in it, the face's
        landmarks (for pasting back) and how many faces the photo holds."""
        photo = photo if photo.mode == "RGB" else photo.convert("RGB")
        try:
            found = self._faces.detect(photo)  # one detection: the framing and the paste-back landmarks share it
            image, frame = frame_face_located(photo, self.resolution, self.framing, face, found, self._faces)
            landmarks, faces = located_face_landmarks(photo, frame, faces=found)
        except MagecError as exc:
            raise MagecError(f"{name}: {exc}") from None
        return self._own(owner, FramedPhoto(image, photo, frame, landmarks, faces=faces, face=face))

    def example(self, which: str, index: int = 0, owner: str | None = None) -> FramedPhoto:
        """A bundled input: ``astronaut`` (scikit-image's photo, framed) or ``generated`` (an unseen face)."""
        if which == "astronaut":
            return self.frame(astronaut_photo(), "astronaut", owner=owner)
        if which == "generated":
            gen = self.pipeline.generator
            with torch.no_grad():
                image = gen.synthesize(gen.sample_latents(1, EXAMPLE_SEED + index))
            return self._own(owner, FramedPhoto(tensor_to_pil(image[0])))
        raise MagecError(f"unknown example {which!r}")

    # -- inversion ------------------------------------------------------------------------------
    def estimate_seconds(self, method: str) -> float:
        """About how long inverting one photo with ``method`` takes here (shown before the user starts it).

        Its steps per schedule part times the seconds per step of that part, measured on this device: the
        first time by a short run of the method on a generated face (3 steps per part, the first one of each
        not counted), then from the studio's own finished inversions."""
        if method not in METHODS:
            raise MagecError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
        config = method_config(method, self.steps_scale)
        if method not in self._step_seconds:
            gen = self.pipeline.generator
            with torch.no_grad():
                face = gen.synthesize(gen.sample_latents(1, EXAMPLE_SEED)).cpu()
            short = replace(config, phases=tuple(replace(p, steps=3) for p in config.phases))
            seconds: dict[str, list[float]] = {}
            invert(self.pipeline, face, method, short, self.seed, step_timer(seconds), pti=PTIConfig(steps=3))
            self._record_steps(method, seconds)
        rates = self._step_seconds[method]
        parts = {str(k): p.steps for k, p in enumerate(config.phases, 1)}
        if method in PTI_METHODS:
            parts["generator"] = PTIConfig().scaled(self.steps_scale).steps
        return sum(steps * rates.get(part, 0.0) for part, steps in parts.items())

    def _record_steps(self, method: str, seconds: dict[str, list[float]]) -> None:
        """Keep the median seconds per step of each schedule part (the first step of each part, which
        includes its set-up, is not counted)."""
        rates = {part: float(np.median(times[1:])) for part, times in seconds.items() if len(times) > 1}
        with self._lock:
            self._step_seconds[method] = {**self._step_seconds.get(method, {}), **rates}

    def submit(self, owner: str, photo: FramedPhoto | Image.Image, methods: tuple[str, ...]) -> Job:
        """Queue the inversion of ``photo`` with each of ``methods`` (results: method -> Projection).

        The ``+pti`` methods then tune the generator around the latent (``PTIConfig`` scaled by the studio's
        ``steps_scale``); their tuning steps advance the progress too.
        """
        for method in methods:
            if method not in METHODS:
                raise MagecError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
        framed = self._own(owner, photo if isinstance(photo, FramedPhoto) else FramedPhoto(photo))
        source = pil_to_tensor(framed.image.convert("RGB"))
        configs = {m: method_config(m, self.steps_scale) for m in methods}
        pti = PTIConfig().scaled(self.steps_scale)
        lengths = {m: c.total_steps + (pti.steps if m in PTI_METHODS else 0) for m, c in configs.items()}
        total = sum(lengths.values())

        def work(job: Job) -> dict[str, Projection]:
            done, results = 0, {}
            for method, config in configs.items():
                offset, tuning, halted = done, [0], [False]

                seconds: dict[str, list[float]] = {}
                timer = step_timer(seconds)

                def callback(
                    info: Any,
                    offset: int = offset,
                    method: str = method,
                    tuning: list = tuning,
                    halted: list = halted,
                    timer: Any = timer,
                ) -> bool:
                    timer(info)
                    stop = job.report(offset + info.step + 1, total, method)
                    if info.target == "generator":
                        tuning[0] += 1
                        halted[0] = halted[0] or stop  # PTI stops its tuning here, half done
                    return stop

                job.report(done, total, method)
                res = invert(self.pipeline, source, method, config, self.seed, callback, pti=pti)
                if not res.stopped and not halted[0]:
                    self._record_steps(method, seconds)
                tuned = res.tuned[0] if res.tuned and not halted[0] else None  # a half-tuned generator is not kept
                noise = [n.cpu() for n in res.noise] if res.noise is not None else None
                results[method] = self._own(owner, Projection(
                    method, res.latents.cpu(), res.space, noise, source, res.steps, res.seconds, res.stopped,
                    res.notes, tuned, framed=framed, tuning_steps=tuning[0], tuning_stopped=halted[0],
                ))  # fmt: skip
                done += lengths[method]
                if job.cancelled:
                    break
            with self._lock:  # its viewer has gone: what it made was released as it was made
                self._ended.discard(owner)
            return results

        return self.queue.submit(owner, work)

    # -- the instant first look (with an encoder) ------------------------------------------------------
    def instant_projection(self, photo: FramedPhoto | Image.Image, owner: str | None = None) -> Projection | None:
        """The encoder's projection of ``photo``: one forward pass (tens of ms on a CPU), run in the caller's
        thread rather than the queue, so the page shows it and its sliders while the queue is busy; None when
        the pipeline has no encoder. Its ``seconds`` is the forward pass's wall time. An upload's was made with
        its framing, as it arrived (``prepare_upload``), and is taken from there."""
        if self.pipeline.encoder is None:
            return None
        look = self._ahead.look_for(photo) if isinstance(photo, FramedPhoto) else None
        return self._own(owner, look if look is not None else self._encoded(photo))

    def first_look_ahead(self, path: str | Path, timeout: float = 30.0) -> tuple[FramedPhoto, Projection] | None:
        """The framed photo and first look made for an upload as it arrived (``prepare_upload``), once they are
        ready (waiting at most ``timeout`` s), without taking them from the page's request; None when there are
        none (another file, no encoder, a framing that failed, or one the page's request already took)."""
        resolved = self._in_uploads(path)
        future = self._ahead.peek(resolved) if resolved is not None else None
        try:
            framed = future.result(timeout) if future is not None else None
        except Exception:  # noqa: BLE001 - the page's own request reports the framing's error
            return None
        look = self._ahead.look_for(framed) if framed is not None else None
        return None if look is None else (framed, look)

    def _encoded(self, photo: FramedPhoto | Image.Image) -> Projection:
        """The encoder's code for ``photo`` as a projection (no owner yet); a code of the wrong shape, NaN or
        infinite is refused."""
        encoder = self.pipeline.encoder
        assert encoder is not None
        framed = photo if isinstance(photo, FramedPhoto) else FramedPhoto(photo)
        source = pil_to_tensor(framed.image.convert("RGB"))
        started = time.perf_counter()
        with torch.no_grad():
            code = encoder(source.to(self.pipeline.device)).float()
        seconds = time.perf_counter() - started
        expected = tuple(self.pipeline.generator.spaces[encoder.space].shape)
        if tuple(code.shape) != (1, *expected):
            raise MagecError(
                f"{encoder.spec or 'encoder'}: gave a code of shape {tuple(code.shape)[1:]}, but "
                f"{self.pipeline.generator.spec} needs {encoder.space} codes of shape {expected}"
            )
        if not torch.isfinite(code).all():
            raise MagecError(f"{encoder.spec or 'encoder'}: gave a code with NaN or infinite values for this photo")
        return Projection(
            INSTANT_METHOD, code.cpu(), encoder.space, None, source, 0, seconds, False, framed=framed, instant=True
        )

    def refine(self, owner: str, instant: Projection, method: str) -> FirstLook:
        """Queue ``method``'s inversion of the photo behind ``instant`` (the second stage), as ``submit`` queues
        any inversion; the page swaps in ``FirstLook.refined`` once it lands."""
        photo = instant.framed if instant.framed is not None else tensor_to_pil(instant.source[0])
        return FirstLook(instant, self.submit(owner, photo, (method,)), method)

    def first_look(self, owner: str, photo: FramedPhoto | Image.Image, method: str) -> FirstLook | None:
        """Both stages at once: the encoder's projection now, ``method``'s queued behind it (None without an
        encoder). The encoder runs before the job is queued, so the optimisation does not slow it down."""
        instant = self.instant_projection(photo, owner)
        return None if instant is None else self.refine(owner, instant, method)

    # -- a stopped pivotal tuning: finish it or discard it ----------------------------------------------
    @property
    def tuning_steps(self) -> int:
        """How many pivotal-tuning steps a ``+pti`` inversion runs here (PTI's default scaled by ``steps_scale``)."""
        return PTIConfig().scaled(self.steps_scale).steps

    def finish_tuning(self, owner: str, projection: Projection) -> Job:
        """Queue the pivotal tuning of a projection whose tuning was stopped (result: method -> Projection).

        PTI runs again from the kept latent, all its steps: the half-tuned generator was not kept, and a rerun with
        the studio's seed tunes what the uninterrupted inversion would have tuned. Cancelled again, it again keeps
        the latent (``tuning_stopped``)."""
        if not projection.tuning_stopped or projection.released:
            raise MagecError("nothing to finish: this projection's pivotal tuning was not stopped")
        pti, method, device = PTIConfig().scaled(self.steps_scale), projection.method, self.pipeline.device

        def work(job: Job) -> dict[str, Projection]:
            done, halted = [0], [False]

            def callback(_image: int, step: int, _loss: float) -> bool:
                done[0] = step + 1
                halted[0] = job.report(step + 1, pti.steps, f"{method} tuning")
                return halted[0]

            job.report(0, pti.steps, f"{method} tuning")
            started = time.perf_counter()
            noise = [n.to(device) for n in projection.noise] if projection.noise is not None else None
            latent = projection.latent.to(device)
            tuned = pivotal_tuning(self.pipeline, projection.source, latent, projection.space, noise, pti, self.seed,
                                   callback)[0]  # fmt: skip
            finished = replace(
                projection,
                tuned=None if halted[0] else tuned,
                tuning_steps=done[0],
                tuning_stopped=halted[0],
                seconds=projection.seconds + time.perf_counter() - started,
                notes=[*projection.notes, f"pivotal tuning {'stopped again' if halted[0] else 'finished'}"],
            )
            return {method: self._own(owner, finished)}

        return self.queue.submit(owner, work)

    def discard_tuning(self, projection: Projection) -> Projection:
        """A stopped ``+pti`` projection's latent without its tuning: the method without pivotal tuning (``magec``
        for ``magec+pti``), drawn by the pipeline's generator; what downloads and ``magec edit`` then use."""
        if not projection.tuning_stopped or projection.released:
            raise MagecError("nothing to discard: this projection's pivotal tuning was not stopped")
        return replace(
            projection,
            method=base_method(projection.method),
            tuned=None,
            tuning_steps=0,
            tuning_stopped=False,
            notes=[*projection.notes, "pivotal tuning stopped and discarded: the untuned latent"],
        )

    def busy(self, owner: str) -> bool:
        """True while ``owner`` has an inversion waiting or running (a newer one than the page may be following)."""
        return self.queue.has_work(owner)

    def cancel(self, owner: str) -> int:
        return self.queue.cancel(owner)

    def end_session(self, owner: str) -> int:
        """A viewer closed the page: stop its jobs (nobody will see them) so the next viewer does not wait, let go
        of its photos and tuned generators, and delete its downloads; returns how many jobs were stopped.

        The page's per-viewer state may outlive the session (Gradio keeps a closed session's state for an hour, in
        case the tab comes back): the objects in it are released here, not left to that state's expiry."""
        stopped = self.queue.cancel(owner)
        with self._lock:
            owned = self._owned.pop(owner, None)
            folders = self._download_dirs.pop(owner, [])
            if self.queue.has_work(owner):  # its running job still makes a projection: released when made
                self._ended.add(owner)
        for thing in list(owned.values()) if owned is not None else []:
            thing.release()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)  # the studio's own scratch files, never the user's
        return stopped

    def _own(self, owner: str | None, thing: Any) -> Any:
        """Record that ``thing`` (a FramedPhoto or Projection) belongs to ``owner``'s session (weakly), so that
        ``end_session`` releases it; released at once when that session has already ended."""
        if owner is None:
            return thing
        with self._lock:
            if owner in self._ended:
                thing.release()
            else:
                if owner not in self._owned:  # a new viewer: forget those whose things are all gone (no unload came)
                    self._owned = {k: v for k, v in self._owned.items() if len(v)}
                self._owned.setdefault(owner, weakref.WeakValueDictionary())[id(thing)] = thing
        return thing

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
        """The edited image (1, 3, R, R) of a projection at the given slider values (``+pti``: drawn by the
        generator tuned for this photo, as ``magec edit`` draws it)."""
        if projection.released:
            raise MagecError("this page's session has ended: reload the page and start again")
        # Keyed by the projection object (its id, checked through a weak reference: an id can be reused once the
        # object is gone, and the cache must not keep a viewer's projection alive) and the non-zero edits.
        key = (id(projection), id(projection.tuned), tuple((k, float(a)) for k, a in values.items() if a))
        with self._lock:
            hit = self._renders.get(key)
            if hit is not None and hit[0]() is projection:
                self._renders.move_to_end(key)
                return hit[1]
        pipeline = projection.drawn_by(self.pipeline)
        image = render_latent(pipeline, projection.latent, projection.space, projection.noise, values).cpu()
        with self._lock:
            self._renders[key] = (weakref.ref(projection), image)
            while len(self._renders) > RENDER_CACHE:
                self._renders.popitem(last=False)
        return image

    def pasted(self, projection: Projection, values: SliderValues, max_side: int | None = None) -> Image.Image | None:
        """The edit pasted back into the uploaded photo at the photo's resolution (``paste_edit``, sharp: the
        photo plus the edit's change, through the inverse of the framing, under the feathered landmark mask);
        None when the input was not a photo.

        With ``max_side`` (the page's view), a photo larger than that comes reduced by a whole factor (each pixel
        the mean of a block of the photo's): the reduced photo is made once, and a change reduces only the blocks
        around the face, exactly what reducing the whole pasted photo would give, without copying a 40 MP photo."""
        framed = projection.framed
        if framed is None or not framed.can_paste:
            return None
        assert framed.photo is not None
        region = framed.paste_region()
        edited, unedited = (tensor_to_pil(self.render(projection, v)[0]) for v in (values, {}))
        face = paste_edit(region.photo, edited, unedited, region.frame, region.landmarks, region.mask)
        factor = -(-max(framed.photo.size) // max_side) if max_side else 1
        if factor <= 1:
            out = framed.photo.copy()
            out.paste(face, region.corner)
            return out
        # The blocks the face touches: whole blocks of ``factor`` pixels (cut at the photo's edge, as reduce cuts).
        width, height = framed.photo.size
        (x, y), (w, h) = region.corner, face.size
        box = (x // factor * factor, y // factor * factor, min(width, -(-(x + w) // factor) * factor),
               min(height, -(-(y + h) // factor) * factor))  # fmt: skip
        blocks = framed.photo.crop(box)
        blocks.paste(face, (x - box[0], y - box[1]))
        out = self._reduced(framed, factor).copy()
        out.paste(blocks.reduce(factor), (box[0] // factor, box[1] // factor))
        return out

    def _reduced(self, framed: FramedPhoto, factor: int) -> Image.Image:
        """``framed``'s photo reduced by ``factor`` (kept for the next change; weakly keyed, as the renders)."""
        key = ("reduced", id(framed), factor)
        with self._lock:
            hit = self._renders.get(key)
            if hit is not None and hit[0]() is framed:
                return hit[1]
        assert framed.photo is not None
        reduced = framed.photo.reduce(factor)
        with self._lock:
            self._renders[key] = (weakref.ref(framed), reduced)
            while len(self._renders) > RENDER_CACHE:
                self._renders.popitem(last=False)
        return reduced

    def captions(self, images: torch.Tensor) -> list[str]:
        """F's predictions for each image (B, 3, R, R), one line each (e.g. ``male 0.93, age 31``)."""
        with torch.no_grad():
            probs = self.pipeline.describer(images.to(self.pipeline.device))
        return self.pipeline.describer.layout.captions(probs, sep=", ")

    def projection_image(self, projection: Projection) -> torch.Tensor:
        return self.render(projection, {})

    # -- downloads ------------------------------------------------------------------------------
    def downloads(self, projection: Projection, values: SliderValues, owner: str | None = None) -> list[Path]:
        """Edited PNG, the latent (``.latent.safetensors``, what ``magec edit`` reads) and the settings JSON; for
        a photo also the edit pasted back into it (``-pasted.png``), for ``+pti`` the tuned generator (what
        ``magec edit`` reads beside the latent)."""
        with self._lock:
            self._serial += 1
            folder = self.scratch / "downloads" / str(self._serial)
            if owner is not None:  # deleted when that viewer's session ends
                self._download_dirs.setdefault(owner, []).append(folder)
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
        meta = {"method": projection.method, "source_name": "studio upload", **self.pipeline.settings()}
        framed = projection.framed
        if framed is not None and framed.frame is not None:  # where the face sits: --paste-back reads it
            meta["photo"] = {"framing": self.framing, **framed.frame.to_dict()}
        latent, *tuned = save_projection(projection, folder / stem, meta, self.pipeline.generator)
        (folder / f"{stem}-settings.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        files = [png, latent, folder / f"{stem}-settings.json", *tuned]
        pasted = self.pasted(projection, values)
        if pasted is not None:
            files.insert(1, save_png(pasted, folder / f"{stem}-pasted.png"))
        return files

    def close(self) -> None:
        """Cancel queued work, stop the queue's worker once its current job returns, remove the scratch files."""
        self.queue.close()
        self._ahead.close()
        self._scratch.cleanup()
