"""The Editor tab's photo inputs: upload, another face of the photo, the two examples; with an encoder in the
pipeline, each new photo's instant first look, refined in the queue by the chosen method.

Without an encoder a new photo is framed and waits for Invert, as it always did. With one
(``Studio.has_encoder``), framing is followed by two stages (``Studio.instant_projection``, ``Studio.refine``):

1. in the framing's own request, with the framed photo: the encoder's projection and the edited image at the
   current slider values (the sliders work on it; an upload's was made as it arrived, ``prepare_upload``, and
   is already on screen by the first look's own route, ``magec.studio.look_route``),
   then F's captions and the photo with the edit pasted back, then the chosen method is queued (``follow``,
   chained, shows its progress);
2. once that inversion lands, its projection replaces the encoder's in the page state and the images are drawn
   again at the slider values of that moment (``landed``, chained after ``follow`` so that it reads the
   *current* page state: a photo uploaded meanwhile is never given another photo's projection).

Gradio is imported inside the functions (after ``configure_gradio``); no ``from __future__ import annotations``
here, since Gradio finds the ``gr.Request`` parameter of a handler from its evaluated annotation.
"""

import html
import time
from pathlib import Path
from typing import Any

import torch

from magec.errors import MagecError
from magec.studio.jobs import FAILED
from magec.studio.photos import display
from magec.studio.session import INSTANT_LABEL, FirstLook, Projection, Studio
from magec.studio.widgets import (
    POLL_SECONDS,
    message,
    pasted_photo,
    progress_html,
    projection_caption,
    session_of,
    tuning_stopped_text,
)

#: Seconds between the first look's last image sent and its method queued: on a 2-core CPU the optimisation,
#: started at once, took the CPU while the page fetched the first look's images (upload to first look on screen,
#: medians of 4 uploads at load 6-8: 833 and 703 ms at once, 452 and 431 ms 0.3 s later). The method lands that
#: much later, out of seconds to minutes.
HEAD_START_S = 0.3


def wire_photo(studio: Studio, state: Any, tab: Any) -> None:
    """Upload and the two examples frame a photo; a new photo forgets the last projection and comparison, and
    with an encoder it is projected at once (``_first_look_handlers``). ``tab``: the ``EditorTab``."""
    import gradio as gr

    def use_photo(photo: Any, st: dict, what: str) -> tuple:
        st = dict(st or {})
        st["photo"] = photo
        st["name"] = what  # to frame another face of the same photo (kept in memory: the upload file is gone)
        st.pop("projection", None)
        st.pop("compare", None)
        st.pop("first_look", None)
        text = f"Framed {html.escape(what)}: ready to invert."
        if getattr(photo, "faces", 1) > 1:
            text = (
                f"Framed face {photo.face} of {html.escape(what)}, which holds {photo.faces} faces (0 is the "
                "largest): change *face in the photo* to take another; ready to invert."
            )
        return display(photo.image), text, st

    def on_upload(path: str | None, face: float | None, st: dict, request: gr.Request) -> tuple:
        """Frame the upload; the file box is emptied again, ready for the next photo."""
        if not path:
            return gr.skip(), gr.skip(), st, None
        try:
            framed = studio.read_upload(path, int(face or 0), session_of(request))
            return *use_photo(framed, st, Path(path).name), None
        except Exception as exc:  # one message in the page; the server keeps serving
            return None, message(exc), st, None
        finally:  # the photo now lives in this viewer's state only: the uploaded copy goes at once
            studio.discard_upload(path)

    def on_face(face: float | None, st: dict, request: gr.Request) -> tuple:
        """Another face of the photo in hand (re-framed from memory)."""
        photo = (st or {}).get("photo")
        if photo is None or photo.photo is None:
            return gr.skip(), gr.skip(), st
        try:
            framed = studio.frame(photo.photo, st.get("name", "photo"), int(face or 0), session_of(request))
            return use_photo(framed, st, st["name"])
        except Exception as exc:
            return gr.skip(), message(exc), st

    def on_example(which: str, index: float | None, st: dict, request: Any) -> tuple:
        try:
            return use_photo(studio.example(which, int(index or 0), session_of(request)), st, which)
        except Exception as exc:
            return None, message(exc), st

    def on_astronaut(index: float | None, st: dict, request: gr.Request) -> tuple:
        return on_example("astronaut", index, st, request)

    def on_generated(index: float | None, st: dict, request: gr.Request) -> tuple:
        return on_example("generated", index, st, request)

    framed = [tab.framed, tab.status, state]
    if not studio.has_encoder:
        for event in (
            tab.upload.upload(on_upload, [tab.upload, tab.face_choice, state], [*framed, tab.upload]),
            tab.face_choice.change(on_face, [tab.face_choice, state], framed),
            tab.astronaut_btn.click(on_astronaut, [tab.face_index, state], framed, api_name="astronaut"),
            tab.generated_btn.click(on_generated, [tab.face_index, state], framed),
        ):
            event.then(lambda: None, None, tab.pasted)
        return

    # With an encoder, the first look comes in the framing's own request (a chained event cost one more round trip
    # through Gradio's queue: 80-200 ms from the framing's answer to the next handler, at load 5-8 on 2 cores).
    first_look, follow, landed, outputs = _first_look_handlers(studio, state, tab)

    def looked(framing: tuple, chosen: str, request: Any, values: tuple) -> Any:
        """The framed photo comes with the first look's images (one message: one trip through the page less), the
        rest of the framing's answer (its line, the file box emptied) with the next, which the page draws after."""
        rest = dict(zip([*framed, tab.upload], framing))
        pending = [{tab.framed: rest.pop(tab.framed), state: rest.pop(state)}, rest]
        for update in first_look(framing[2], chosen, request, *values):
            yield {**pending.pop(0), **update} if pending else update
        if pending:  # the first look stopped at once (the framing failed)
            yield {key: value for part in pending for key, value in part.items()}

    def on_upload_look(
        path: str | None, face: float | None, st: dict, chosen: str, request: gr.Request, *values: float
    ) -> Any:
        yield from looked(on_upload(path, face, st, request), chosen, request, values)

    def on_face_look(face: float | None, st: dict, chosen: str, request: gr.Request, *values: float) -> Any:
        yield from looked(on_face(face, st, request), chosen, request, values)

    def on_astronaut_look(index: float | None, st: dict, chosen: str, request: gr.Request, *values: float) -> Any:
        yield from looked(on_astronaut(index, st, request), chosen, request, values)

    def on_generated_look(index: float | None, st: dict, chosen: str, request: gr.Request, *values: float) -> Any:
        yield from looked(on_generated(index, st, request), chosen, request, values)

    # The framing's spinner stays on the framing's outputs; the images come without one (the user edits them).
    both = {
        "outputs": [*framed, tab.upload, *(c for c in outputs if all(c is not f for f in framed))],
        "show_progress_on": [tab.framed, tab.status],
    }
    hidden = {"concurrency_limit": None, "api_name": False, "show_progress": "hidden"}
    rest = [tab.method, *tab.sliders]
    for event in (
        tab.upload.upload(on_upload_look, [tab.upload, tab.face_choice, state, *rest], **both),
        tab.face_choice.change(on_face_look, [tab.face_choice, state, *rest], **both),
        tab.astronaut_btn.click(on_astronaut_look, [tab.face_index, state, *rest], api_name="astronaut", **both),
        tab.generated_btn.click(on_generated_look, [tab.face_index, state, *rest], **both),
    ):
        event.then(follow, [state], [tab.progress], **hidden).then(landed, [state, *tab.sliders], outputs, **hidden)


def _drawn(studio: Studio, projection: Projection, values: list[float]) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The projection's image and the edited one at ``values`` (the same tensor when no slider moves it), and
    whether a slider moves it."""
    image = studio.projection_image(projection)
    amounts = studio.slider_values(values)
    moved = any(amounts.values())
    return image, studio.render(projection, amounts) if moved else image, moved


def _images(tab: Any, projection: Projection, image: torch.Tensor, edited: torch.Tensor) -> dict:
    return {
        tab.shown["original"]: display(projection.source[0]),
        tab.shown["projection"]: display(image),
        tab.shown["edited"]: display(edited),
    }


def _captions(studio: Studio, tab: Any, projection: Projection, image: torch.Tensor, edited: torch.Tensor,
              moved: bool) -> dict:  # fmt: skip
    """F's captions of the three, in one batch (the edited image left out of it when it is the projection)."""
    if moved:
        source, drawn, changed = studio.captions(torch.cat([projection.source, image, edited]))
    else:
        source, drawn = studio.captions(torch.cat([projection.source, image]))
        changed = drawn
    return {
        tab.captions["original"]: source,
        tab.captions["projection"]: projection_caption(studio, projection, drawn),
        tab.captions["edited"]: changed,
    }


def _shown(studio: Studio, tab: Any, projection: Projection, values: list[float]) -> dict:
    """The original, the projection and the edited image at ``values``, with F's captions, the projection's
    caption naming which projection it is."""
    image, edited, moved = _drawn(studio, projection, values)
    return {**_images(tab, projection, image, edited), **_captions(studio, tab, projection, image, edited, moved)}


def _first_look_handlers(studio: Studio, state: Any, tab: Any) -> tuple[Any, Any, Any, list[Any]]:
    """The two stages' handlers (``first_look``; ``follow`` its queued method, then ``landed``) and the components
    they update."""
    import gradio as gr

    def first_look(st: dict, chosen: str, request: gr.Request, *values: float) -> Any:
        """Stage one, in the framing's request: the encoder's projection now, the pasted photo next, then the
        chosen method queued (``follow`` shows its progress)."""
        st = dict(st or {})
        photo = st.get("photo")
        if photo is None or "projection" in st:  # framing failed: the photo in hand is the previous one
            yield {tab.pasted: None}
            return
        try:
            instant = studio.instant_projection(photo, session_of(request))
            assert instant is not None  # wired only when the studio has an encoder
            image, edited, moved = _drawn(studio, instant, list(values))
        except Exception as exc:
            yield {tab.pasted: None, tab.status: message(exc)}
            return
        st["projection"] = instant
        yield {  # the images alone first (the less the page has to draw, the sooner they are on screen)
            state: st,
            **_images(tab, instant, image, edited),
            tab.captions["projection"]: projection_caption(studio, instant, "…"),  # which projection it is, at once
        }
        try:
            captions = _captions(studio, tab, instant, image, edited, moved)
        except Exception as exc:
            yield {tab.pasted: None, tab.status: message(exc)}
            return
        text = {
            tab.status: (
                f"Showing the **{INSTANT_LABEL}** projection: move the sliders to edit. {html.escape(chosen)} "
                "refines it in the background; it replaces this one when it lands, at your slider values."
            ),
            tab.progress: progress_html(
                None,
                text=f"{INSTANT_LABEL} projection in {instant.seconds * 1000:.0f} ms; {chosen} queued to refine it",
            ),
            **captions,
        }
        try:
            yield {**text, tab.pasted: pasted_photo(studio, instant, list(values))}
        except Exception:  # the edited image is there; a paste that fails leaves the photo out
            yield {**text, tab.pasted: None}
        time.sleep(HEAD_START_S)  # the page fetches the images just sent before the optimisation takes the CPU
        try:
            first = studio.refine(session_of(request), instant, chosen)
        except Exception as exc:  # e.g. the studio is closing: the encoder's projection stays
            yield {tab.status: message(exc)}
            return
        st = dict(st)
        st["first_look"] = first
        yield {state: st, tab.progress: progress_html(first.job, studio.queue.ahead(first.job))}

    def follow(st: dict) -> Any:
        """The queued method's progress, until it ends (then ``landed`` runs)."""
        first = (st or {}).get("first_look")
        if not isinstance(first, FirstLook):
            yield {}
            return
        while not first.job.wait(POLL_SECONDS):
            yield {tab.progress: progress_html(first.job, studio.queue.ahead(first.job))}
        yield {}

    def landed(st: dict, request: gr.Request, *values: float) -> dict:
        """Stage two, on the page state as it is now: the refined projection replaces the encoder's when it
        belongs to the photo in hand (nothing changes while a newer inversion of this viewer runs)."""
        st = dict(st or {})
        first = st.get("first_look")
        if not isinstance(first, FirstLook) or not first.job.finished or first.instant.framed is not st.get("photo"):
            return {}
        job, refined = first.job, first.refined
        if refined is None and job.state != FAILED and studio.busy(session_of(request)):
            return {}  # cancelled for a newer inversion, which reports itself
        st.pop("first_look")
        if refined is None:
            text = job.error if job.state == FAILED else f"{first.method}: cancelled"
            return {
                state: st,
                tab.progress: progress_html(None, text=f"{text}; the {INSTANT_LABEL} projection stays"),
                **({tab.status: message(MagecError(job.error))} if job.state == FAILED else {}),
            }
        st["projection"] = refined
        try:
            shown = _shown(studio, tab, refined, list(values))
            pasted = pasted_photo(studio, refined, list(values))
        except Exception as exc:
            return {state: st, tab.status: message(exc)}
        del shown[tab.shown["original"]], shown[tab.captions["original"]]  # unchanged
        tuning = f" + {refined.tuning_steps} tuning steps" if refined.tuned is not None else ""
        done = (
            f"{first.method}: done after {refined.steps} steps{tuning} in {refined.seconds:.1f} s; it replaced the "
            f"{INSTANT_LABEL} projection"
        )
        if refined.tuning_stopped:
            done = f"{tuning_stopped_text(studio, refined)} It replaced the {INSTANT_LABEL} projection."
        return {
            state: st,
            tab.tuning_row: gr.update(visible=refined.tuning_stopped),
            tab.status: "Move the sliders to edit.",
            tab.progress: progress_html(None, text=done),
            tab.pasted: pasted,
            **shown,
        }

    outputs = [state, tab.status, tab.progress, *tab.shown.values(), *tab.captions.values(), tab.pasted, tab.tuning_row]
    return first_look, follow, landed, outputs


def wire_tuning(studio: Studio, state: Any, tab: Any) -> None:
    """The two buttons shown when a ``+pti``'s tuning was stopped: finish it in the queue (``Studio.finish_tuning``)
    or use the untuned latent (``Studio.discard_tuning``); either way the images are drawn again at the sliders."""
    import gradio as gr

    def on_finish(st: dict, request: gr.Request, *values: float) -> Any:
        st = dict(st or {})
        try:
            job = studio.finish_tuning(session_of(request), st.get("projection"))
        except Exception as exc:
            yield {tab.status: message(exc)}
            return
        yield {tab.tuning_row: gr.update(visible=False), tab.progress: progress_html(job, studio.queue.ahead(job))}
        while not job.wait(POLL_SECONDS):
            yield {tab.progress: progress_html(job, studio.queue.ahead(job))}
        projection = (job.result or {}).get(st["projection"].method)
        if projection is None:  # failed, or cancelled before it started: the stopped projection stays
            text = job.error or "cancelled before it started"
            yield {tab.progress: progress_html(None, text=text), tab.tuning_row: gr.update(visible=True)}
            return
        yield _redraw(projection, st, list(values), f"{projection.method}: tuning finished ({projection.tuning_steps} "
                      f"steps); the sliders draw with the tuned generator")  # fmt: skip

    def on_discard(st: dict, *values: float) -> Any:
        st = dict(st or {})
        try:
            kept = studio.discard_tuning(st.get("projection"))
        except Exception as exc:
            return {tab.status: message(exc)}
        return _redraw(kept, st, list(values), f"pivotal tuning discarded: editing the untuned latent ({kept.method})")

    def _redraw(projection: Projection, st: dict, values: list[float], text: str) -> dict:
        if projection.tuning_stopped:  # cancelled again: still finish or discard
            text = tuning_stopped_text(studio, projection)
        st["projection"] = projection
        try:
            shown, pasted = _shown(studio, tab, projection, values), pasted_photo(studio, projection, values)
        except Exception as exc:
            return {state: st, tab.status: message(exc)}
        return {
            state: st,
            tab.progress: progress_html(None, text=text),
            tab.tuning_row: gr.update(visible=projection.tuning_stopped),
            tab.pasted: pasted,
            **shown,
        }

    outputs = [state, tab.status, tab.progress, *tab.shown.values(), *tab.captions.values(), tab.pasted, tab.tuning_row]
    tab.finish_btn.click(on_finish, [state, *tab.sliders], outputs, concurrency_limit=None, api_name=False)
    tab.discard_btn.click(on_discard, [state, *tab.sliders], outputs, api_name=False)
