"""The studio's Gradio page: Editor, Compare and Study tabs over ``magec.studio.session`` and ``study``.

Offline by construction: Gradio's page and scripts ship inside its wheel, the theme uses the system's
fonts (no web fonts), analytics and version checks are off (``GRADIO_ANALYTICS_ENABLED=False``, set
before Gradio is imported), and nothing is shared. Gradio is imported only inside the functions that build the
page (``build_app``, one function per tab) and ``serve``, after ``configure_gradio`` has set its environment.
"""

# No ``from __future__ import annotations`` here: Gradio finds the ``gr.Request`` parameter of a handler
# from its evaluated annotation, and ``gr`` is imported inside the page's functions (after ``configure_gradio``).
import html
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magec.errors import MagecError
from magec.inversion.config import PAPER_METHODS as METHODS
from magec.studio.edit_route import SLIDER_JS, add_render_route
from magec.studio.jobs import CANCELLED, FAILED
from magec.studio.look_route import FIRST_LOOK_CSS, FIRST_LOOK_JS, add_first_look_route
from magec.studio.photo_inputs import wire_photo, wire_tuning
from magec.studio.photos import display
from magec.studio.session import MAX_UPLOAD_BYTES, Studio
from magec.studio.session import METHODS as EDITOR_METHODS
from magec.studio.study import StudyDB, Trial, check_judge, png_image
from magec.studio.uploads_ahead import UploadWatch
from magec.studio.widgets import (
    POLL_SECONDS,
    message,
    pasted_photo,
    progress_html,
    projection_caption,
    rendered,
    session_of,
    tuning_stopped_text,
)

log = logging.getLogger("magec")

#: The Editor's method when the page opens: the one that gives the person back (see ``editor_tab``).
DEFAULT_METHOD = "magec+pti"
#: How long an image the page was sent stays in the server's folder, and how often old ones are swept.
RENDER_MAX_AGE_S, RENDER_SWEEP_S = 1800, 300
#: Generator images are sent at their own resolution (``display``) and enlarged by the page with square pixels.
PIXELS_CLASS = "magec-pixels"
PAGE_CSS = f".{PIXELS_CLASS} img {{ object-fit: contain !important; image-rendering: pixelated; }}"


def configure_gradio(upload_dir: Path) -> None:
    """Gradio's environment: no analytics or version check, uploads into ``upload_dir`` (set before import)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(upload_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_SHARE", "False")


def generator_images(studio: Studio) -> dict[str, Any]:
    """How an image component shows generator images (``display``): enlarged by the page with square pixels, and
    sent as PNG when they are small (lossless; at 64 px 2 ms to encode against 18 ms for the WebP of the 256-px
    enlargement sent before, measured at load 12 on 2 cores), as JPEG from 256 px (photo-like PNGs that size are
    large and slow to encode)."""
    small = studio.pipeline.generator.resolution < 256
    return {"format": "png" if small else "jpeg", "elem_classes": [PIXELS_CLASS]}


def _theme() -> Any:
    import gradio as gr

    system = ["ui-sans-serif", "system-ui", "sans-serif"]
    return gr.themes.Default(font=system, font_mono=["ui-monospace", "monospace"])


def build_app(studio: Studio, study_db: Path | None = None) -> Any:
    """The page as a ``gradio.Blocks`` (not launched): a header over the Editor, Compare and Study tabs."""
    return _page(studio, study_db)[0]


def _page(studio: Studio, study_db: Path | None = None) -> tuple[Any, Any]:
    """The page and its ``gr.State`` (the slider's route reads a session's projection from it: ``serve``)."""
    import gradio as gr

    # Gradio keeps every image it sends in its cache folder: files older than RENDER_MAX_AGE_S are deleted
    # every RENDER_SWEEP_S seconds (and all of them when the studio stops), so the folder stays bounded.
    with gr.Blocks(
        title="magec studio", analytics_enabled=False, delete_cache=(RENDER_SWEEP_S, RENDER_MAX_AGE_S)
    ) as app:
        state = gr.State({})
        gr.Markdown(
            f"# magec studio\nGenerator `{studio.pipeline.generator.spec}`, F `{studio.pipeline.describer.spec}`, "
            f"device `{studio.pipeline.device}`. Everything runs on this machine."
        )
        editor = editor_tab(studio, state)
        compare_tab(studio, state)
        study_tab(study_db, state)
        app.load(_estimate_handler(studio), editor.method, editor.estimate, api_name=False)  # before any click

        def on_close(request: gr.Request) -> None:  # the tab was closed: its inversions are nobody's any more
            studio.end_session(session_of(request))

        app.unload(on_close)
    return app, state


# -- shared by the tabs -------------------------------------------------------------------------------
# Each tab function builds its components and wires their events inside the caller's ``gr.Blocks``
# context, sharing only the page's ``gr.State`` (a dict: photo, projection, compare, judge, trial); a test
# builds one tab alone. Gradio is imported inside each function, after ``configure_gradio``.


def _cancel_handler(studio: Studio) -> Any:
    """A click handler that cancels this viewer's queued and running inversions."""
    import gradio as gr

    def on_cancel(request: gr.Request) -> None:
        studio.cancel(session_of(request))

    return on_cancel


def _estimate_handler(studio: Studio) -> Any:
    """A handler that says how long inverting one photo with the chosen method takes here, before it starts."""

    def on_method(chosen: str) -> str:
        try:
            return f"{chosen}: about {studio.estimate_seconds(chosen):.0f} s per photo on this machine."
        except Exception as exc:  # one message in the page
            return message(exc)

    return on_method


# -- editor ---------------------------------------------------------------------------------------------
@dataclass
class EditorTab:
    """The Editor tab's components (Gradio objects), for the handlers and for tests."""

    upload: Any
    astronaut_btn: Any
    generated_btn: Any
    face_index: Any
    face_choice: Any
    status: Any
    framed: Any
    method: Any
    estimate: Any
    invert_btn: Any
    cancel_btn: Any
    progress: Any
    #: Shown when a ``+pti``'s tuning was stopped: finish it, or use the untuned latent.
    tuning_row: Any
    finish_btn: Any
    discard_btn: Any
    shown: dict[str, Any]
    captions: dict[str, Any]
    pasted: Any
    sliders: list[Any]
    reset_btn: Any
    download_btn: Any
    downloads: Any


def editor_tab(studio: Studio, state: Any) -> EditorTab:
    """The Editor tab: frame a photo, invert it with one method, move the sliders, download."""
    tab = _editor_layout(studio)
    wire_photo(studio, state, tab)
    _wire_invert(studio, state, tab)
    wire_tuning(studio, state, tab)
    _wire_edits(studio, state, tab)
    return tab


def _editor_layout(studio: Studio) -> EditorTab:
    import gradio as gr

    pixels = generator_images(studio)
    with gr.Tab("Editor", id="editor", elem_id="tab-editor"):
        with gr.Row():
            with gr.Column(scale=2):
                upload = gr.File(
                    label=f"Upload a photo (at most {MAX_UPLOAD_BYTES // 2**20} MB, 40 megapixels)",
                    type="filepath",
                    elem_id="upload",
                )
                with gr.Row():
                    astronaut_btn = gr.Button("Astronaut photo", elem_id="astronaut-btn", size="sm")
                    generated_btn = gr.Button("A generated face", elem_id="generated-btn", size="sm")
                    face_index = gr.Number(0, label="face seed", precision=0, minimum=0, maximum=9999)
                face_choice = gr.Number(
                    0,
                    label="face in the photo (0 = the largest, 1 = the next...)",
                    precision=0,
                    minimum=0,
                    maximum=99,
                    elem_id="face-choice",
                )
                status = gr.Markdown("Upload a photo or pick an example.", elem_id="status")
            with gr.Column(scale=1):
                framed = gr.Image(
                    label="framed for the generator", interactive=False, elem_id="framed", height=192, **pixels
                )
        with gr.Row():
            # magec+pti gives the person back (README, "Your photo back": dlib distance 0.26 vs 0.58-0.65 without)
            method = gr.Radio(list(EDITOR_METHODS), value=DEFAULT_METHOD, label="method", elem_id="method")
            invert_btn = gr.Button("Invert", variant="primary", elem_id="invert-btn")
            cancel_btn = gr.Button("Cancel", elem_id="cancel-btn")
        estimate = gr.Markdown("", elem_id="estimate")
        progress = gr.HTML(progress_html(None, text="no inversion yet"), elem_id="progress")
        with gr.Row(visible=False, elem_id="tuning-stopped") as tuning_row:
            finish_btn = gr.Button("Finish the tuning", size="sm", elem_id="finish-tuning-btn")
            discard_btn = gr.Button("Use the untuned latent", size="sm", elem_id="discard-tuning-btn")
        with gr.Row():
            shown = {}
            captions = {}
            for name in ("original", "projection", "edited"):
                with gr.Column():
                    shown[name] = gr.Image(label=name, interactive=False, elem_id=name, height=256, **pixels)
                    captions[name] = gr.Markdown("", elem_id=f"caption-{name}")
        pasted = gr.Image(
            label="Your photo, edited (the edit pasted back; full resolution in the downloads)",
            interactive=False,
            elem_id="pasted",
            height=384,
            format="jpeg",  # a 1024-px photo: 3 ms to encode as JPEG against 98 ms as WebP (Gradio's default)
        )
        with gr.Accordion("Edits", open=True):
            sliders = [
                gr.Slider(s.minimum, s.maximum, 0.0, step=s.step, label=s.label, info=s.note or None, elem_id=s.elem_id)
                for s in studio.sliders
            ]
            reset_btn = gr.Button("Reset sliders", size="sm")
        download_btn = gr.Button(
            "Prepare downloads (edited PNG, your photo edited, latent, settings)", elem_id="download-btn"
        )
        downloads = gr.File(label="downloads", file_count="multiple", interactive=False, elem_id="downloads")
    return EditorTab(
        upload, astronaut_btn, generated_btn, face_index, face_choice, status, framed, method, estimate, invert_btn,
        cancel_btn, progress, tuning_row, finish_btn, discard_btn,
        shown, captions, pasted, sliders, reset_btn, download_btn, downloads,
    )  # fmt: skip


def _wire_invert(studio: Studio, state: Any, tab: EditorTab) -> None:
    """Invert runs in the studio's queue, pushing its progress; Cancel stops this viewer's inversions."""
    import gradio as gr

    progress, status, shown, captions = tab.progress, tab.status, tab.shown, tab.captions

    def on_invert(st: dict, chosen: str, request: gr.Request, *values: float) -> Any:
        photo = (st or {}).get("photo")
        if photo is None:
            yield {status: "Upload a photo or pick an example first."}
            return
        job = studio.submit(session_of(request), photo, (chosen,))
        while not job.wait(POLL_SECONDS):
            yield {progress: progress_html(job, studio.queue.ahead(job))}
        projection = (job.result or {}).get(chosen)
        if job.state == FAILED or projection is None:
            text = job.error if job.state == FAILED else "cancelled before it started"
            yield {progress: progress_html(None, text=text), status: message(MagecError(text))}
            return
        st = dict(st)
        st["projection"] = projection
        proj = studio.projection_image(projection)
        edited, edited_caption = rendered(studio, projection, list(values))
        source_caption, proj_caption = studio.captions(projection.source), studio.captions(proj)[0]
        done = "stopped early (cancel)" if projection.stopped else "done"
        tuning = f" + {projection.tuning_steps} tuning steps" if projection.tuned is not None else ""
        text = f"{chosen}: {done} after {projection.steps} steps{tuning} in {projection.seconds:.1f} s"
        yield {
            progress: progress_html(
                None, text=tuning_stopped_text(studio, projection) if projection.tuning_stopped else text
            ),  # fmt: skip
            tab.tuning_row: gr.update(visible=projection.tuning_stopped),
            status: "Move the sliders to edit.",
            state: st,
            shown["original"]: display(projection.source[0]),
            shown["projection"]: display(proj),
            shown["edited"]: edited,
            captions["original"]: source_caption[0],
            captions["projection"]: projection_caption(studio, projection, proj_caption),
            captions["edited"]: edited_caption,
            tab.pasted: pasted_photo(studio, projection, list(values)),
        }

    outputs = [progress, status, state, *shown.values(), *captions.values(), tab.pasted, tab.tuning_row]
    tab.invert_btn.click(
        on_invert, [state, tab.method, *tab.sliders], outputs, concurrency_limit=None, api_name="invert"
    )
    tab.cancel_btn.click(_cancel_handler(studio), None, None, queue=False)
    tab.method.change(_estimate_handler(studio), tab.method, tab.estimate, api_name=False)


def _wire_edits(studio: Studio, state: Any, tab: EditorTab) -> None:
    """The sliders redraw the edited image and F's caption through the studio's own route (``edit_route``: one
    POST, the image inline in the reply), then, in a Gradio request, the photo it is pasted into (the edit is drawn
    once for both: ``Studio.render`` keeps it).

    Why the route (measured in the page, medians after the value changed, load 8-11 on 2 cores): through Gradio's
    event the request left at 20-29 ms, the server answered ~45 ms later (render and F ~35 ms), the image's file
    came by a second GET and the image loaded at 150-200 ms, with 18-20 long main-thread tasks (1.5-2.1 s) in 15
    changes; through the route the request leaves at 6 ms, the image is shown at 55-70 ms, with 0-2 long tasks.
    F's caption stays in the image's request: sent with the photo instead, the image came sooner but the next
    change then overlapped that second request, and the page was slower (p50 227-233 against 156-193 ms, load 16).
    """
    import gradio as gr

    sliders = tab.sliders
    for slider in sliders:  # in the page: the handler posts to the route and shows its reply (no Python handler)
        slider.change(
            None,
            sliders,
            None,
            js=SLIDER_JS,
            queue=False,
            trigger_mode="always_last",
            show_progress="hidden",
            api_name=False,
        )

    def on_pasted(st: dict, *values: float) -> Any:
        projection = (st or {}).get("projection")
        if projection is None:
            return gr.skip()
        try:
            return pasted_photo(studio, projection, list(values))
        except Exception:  # the edited image's handler reports the problem
            return gr.skip()

    for slider in sliders:  # a separate request: the edited square is not held up by the photo's paste
        slider.change(
            on_pasted,
            [state, *sliders],
            tab.pasted,
            queue=False,
            trigger_mode="always_last",
            show_progress="hidden",
            api_name=False,
        )
    tab.reset_btn.click(lambda: [0.0] * len(sliders), None, sliders)

    def on_download(st: dict, request: gr.Request, *values: float) -> Any:
        projection = (st or {}).get("projection")
        if projection is None:
            return None
        files = studio.downloads(projection, studio.slider_values(list(values)), session_of(request))
        return [str(p) for p in files]

    tab.download_btn.click(on_download, [state, *sliders], tab.downloads)


# -- compare --------------------------------------------------------------------------------------------
@dataclass
class CompareTab:
    """The Compare tab's components: one image and caption per method, keyed by method."""

    compare_btn: Any
    cancel_btn: Any
    progress: Any
    edit: Any
    amount: Any
    images: dict[str, Any]
    captions: dict[str, Any]


def compare_tab(studio: Studio, state: Any) -> CompareTab:
    """The Compare tab: the Editor's framed photo inverted with the three methods, one edit applied to all."""
    import gradio as gr

    specs, pixels = studio.sliders, generator_images(studio)
    with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
        gr.Markdown("The photo framed in the Editor, inverted with the three methods; one edit applied to all.")
        with gr.Row():
            compare_btn = gr.Button("Invert with all three methods", variant="primary", elem_id="compare-btn")
            cancel_btn = gr.Button("Cancel", elem_id="compare-cancel")
        progress = gr.HTML(progress_html(None, text=""), elem_id="compare-progress")
        with gr.Row():
            edit = gr.Dropdown([s.label for s in specs], value=specs[0].label, label="edit")
            amount = gr.Slider(-1.0, 1.0, 0.0, step=0.05, label="amount (fraction of the slider's reach)")
        with gr.Row():
            images, captions = {}, {}
            for m in METHODS:
                with gr.Column():
                    images[m] = gr.Image(label=m, interactive=False, elem_id=f"compare-{m}", height=256, **pixels)
                    captions[m] = gr.Markdown("", elem_id=f"compare-caption-{m}")
    tab = CompareTab(compare_btn, cancel_btn, progress, edit, amount, images, captions)
    _wire_compare(studio, state, tab)
    return tab


def _wire_compare(studio: Studio, state: Any, tab: CompareTab) -> None:
    import gradio as gr

    specs, progress = studio.sliders, tab.progress

    def compare_render(results: dict, label: str, fraction: float) -> dict:
        spec = next(s for s in specs if s.label == label)
        amount = fraction * spec.maximum if fraction >= 0 else -fraction * spec.minimum
        values = {spec.key: float(amount)}
        out = {}
        for m, projection in results.items():
            image = studio.render(projection, values)
            out[tab.images[m]] = display(image)
            out[tab.captions[m]] = f"{m}: {studio.captions(image)[0]}"
        return out

    def on_compare(st: dict, label: str, fraction: float, request: gr.Request) -> Any:
        photo = (st or {}).get("photo")
        if photo is None:
            yield {progress: progress_html(None, text="Frame a photo in the Editor tab first.")}
            return
        job = studio.submit(session_of(request), photo, METHODS)
        while not job.wait(POLL_SECONDS):
            yield {progress: progress_html(job, studio.queue.ahead(job))}
        results = job.result or {}
        if job.state in (FAILED, CANCELLED) or len(results) < len(METHODS):
            yield {progress: progress_html(None, text=job.error or "cancelled")}
            return
        st = dict(st)
        st["compare"] = results
        yield {
            progress: progress_html(
                None, text="done: " + ", ".join(f"{m} {r.steps} steps" for m, r in results.items())
            ),
            state: st,
            **compare_render(results, label, fraction),
        }

    shown = [*tab.images.values(), *tab.captions.values()]
    tab.compare_btn.click(on_compare, [state, tab.edit, tab.amount], [progress, state, *shown], concurrency_limit=None)
    tab.cancel_btn.click(_cancel_handler(studio), None, None, queue=False)

    def on_compare_edit(st: dict, label: str, fraction: float) -> Any:
        results = (st or {}).get("compare")
        if not results:
            return {}
        return compare_render(results, label, fraction)

    for trigger in (tab.edit.change, tab.amount.change):
        trigger(on_compare_edit, [state, tab.edit, tab.amount], shown, show_progress="hidden")


# -- study ----------------------------------------------------------------------------------------------
@dataclass
class StudyTab:
    """The Study tab's components."""

    note: Any
    judge: Any
    judge_btn: Any
    label: Any
    photo: Any
    left: Any
    right: Any
    left_btn: Any
    right_btn: Any
    count: Any


def _open_study(study_db: Path | None) -> tuple[StudyDB | None, str]:
    """The study database and, when it cannot be used yet, why (checked again at every Start)."""
    if study_db is None:
        return None, "No study database: start the studio with `--study-db PATH`."
    try:
        db = StudyDB(study_db, create=True)
    except MagecError as exc:
        return None, str(exc)
    if not db.pool_size():
        return None, (
            f"The study database {study_db.name} holds no pool of edits yet: prepare one with "
            f"`magec study prepare --db {study_db}` (no restart needed)."
        )
    return db, ""


def study_tab(study_db: Path | None, state: Any) -> StudyTab:
    """The Study tab: the blind pairwise judgements of ``study_db`` (opened now, and again at Start if unusable)."""
    import gradio as gr

    db, problem = _open_study(study_db)
    with gr.Tab("Study", id="study", elem_id="tab-study"):
        gr.Markdown(
            "Blind pairwise study (the paper's Fig. 5). For each photo and named edit, pick the edited image "
            "that is better in **quality** and in **coherence with the named edit**."
        )
        note = gr.Markdown(problem, elem_id="study-note")
        with gr.Row():
            judge = gr.Textbox(label="judge id (asked once)", elem_id="judge", max_length=64)
            judge_btn = gr.Button("Start", elem_id="judge-btn")
        label = gr.Markdown("", elem_id="study-label")
        with gr.Row():
            photo = gr.Image(label="photo", interactive=False, elem_id="study-photo", height=192)
            pixels = {"format": "png", "elem_classes": [PIXELS_CLASS]}  # the pool's PNGs, at their resolution
            left = gr.Image(label="left", interactive=False, elem_id="study-left", height=192, **pixels)
            right = gr.Image(label="right", interactive=False, elem_id="study-right", height=192, **pixels)
        with gr.Row():
            left_btn = gr.Button("Left is better", elem_id="left-btn")
            right_btn = gr.Button("Right is better", elem_id="right-btn")
        count = gr.Markdown("", elem_id="study-count")
    tab = StudyTab(note, judge, judge_btn, label, photo, left, right, left_btn, right_btn, count)
    _wire_study(study_db, db, state, tab)
    return tab


def _wire_study(study_db: Path | None, db: StudyDB | None, state: Any, tab: StudyTab) -> None:
    import gradio as gr

    outputs = [tab.note, tab.label, tab.photo, tab.left, tab.right, tab.count, state]

    def show_trial(st: dict, trial: Trial | None, count: int) -> tuple:
        st = dict(st)
        st["trial"] = trial
        if trial is None:
            return "The pool is empty.", "", None, None, None, f"{count} judgement(s) recorded.", st
        return (
            "",
            f"### Edit: {html.escape(trial.label)}",
            png_image(trial.photo_png).resize((192, 192)),
            display(png_image(trial.left_png)),
            display(png_image(trial.right_png)),
            f"{count} judgement(s) recorded for this judge.",
            st,
        )

    def on_judge(name: str, st: dict) -> tuple:
        nonlocal db
        if db is None:
            db, problem = _open_study(study_db)
            if db is None:
                return problem, *[gr.skip()] * 5, st
        try:
            name = check_judge(name)
        except MagecError as exc:
            return str(exc), *[gr.skip()] * 5, st
        st = dict(st or {})
        st["judge"] = name
        count = sum(1 for r in db.rows() if r["judge"] == name)
        return show_trial(st, db.next_trial(name), count)

    def on_choice(choice: str, st: dict) -> tuple:
        st = dict(st or {})
        trial, name = st.get("trial"), st.get("judge")
        if db is None or trial is None or not name:
            return "Enter your judge id and press Start first.", *[gr.skip()] * 5, st
        count = db.record(name, trial, choice)  # committed before the page moves on
        return show_trial(st, db.next_trial(name), count)

    tab.judge_btn.click(on_judge, [tab.judge, state], outputs)
    tab.judge.submit(on_judge, [tab.judge, state], outputs)
    tab.left_btn.click(lambda st: on_choice("left", st), [state], outputs)
    tab.right_btn.click(lambda st: on_choice("right", st), [state], outputs)


def serve(
    studio: Studio,
    host: str = "127.0.0.1",
    port: int = 7860,
    study_db: Path | None = None,
    block: bool = True,
) -> Any:
    """Build and start the page; with ``block`` it serves until Ctrl-C, else returns the running app."""
    studio.warm_up()  # while the page starts: the first photo does not wait for dlib's models or first calls
    app, state = _page(studio, study_db)
    app.queue(default_concurrency_limit=None)
    from starlette.middleware import Middleware

    try:
        app.launch(
            app_kwargs={"middleware": [Middleware(UploadWatch, studio=studio)]},  # frames uploads on arrival
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            max_file_size=studio.max_bytes,
            theme=_theme(),
            css=PAGE_CSS + (" " + FIRST_LOOK_CSS if studio.has_encoder else ""),
            head=FIRST_LOOK_JS if studio.has_encoder else None,  # answers an upload at once (``look_route``)
            prevent_thread_lock=True,
            quiet=True,
            show_error=False,
            footer_links=[],
            ssr_mode=False,
        )
    except OSError as exc:
        raise MagecError(f"cannot serve on {host}:{port} ({exc})") from None
    add_render_route(app, studio, state, generator_images(studio)["format"])  # before any projection exists
    if studio.has_encoder:
        add_first_look_route(app, studio, generator_images(studio)["format"])
    print(f"magec studio: serving on http://{host}:{port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
    if not block:
        return app
    try:
        app.block_thread()
    finally:
        app.close()
        studio.queue.close()  # the caller still owns the studio (and closes it); its queue's work ends here
    return app
