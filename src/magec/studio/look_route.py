"""The first look's own route: ``POST /magec/first-look`` answers an upload with its encoder projection's image.

Why: through Gradio's event the page asks for an upload's framing 80-180 ms after the upload's answer (its own
handling of the file box), and the framed photo and first look then came through Gradio's queue, its image cache
and a second GET: the first projection was on screen 306-439 ms after the upload's request ended (the browser
test, idle 2-core machine), against the issue's 300 ms. The page's script (``FIRST_LOOK_JS``, in the page's
head) sees the upload's answer itself, posts here at once, and lays the images it gets over the projection and
the framed photo until Gradio's own images (the same pictures) replace them.

Security: the request names the page's session (a session this server does not know is refused, as the slider's
route refuses it) and the upload's server file name as Gradio's upload route gave it; that name is only looked up
among the uploads the studio is framing in memory (inside its upload folder), never opened.
"""

from __future__ import annotations

from typing import Any

from magec.errors import MagecError
from magec.studio.edit_route import MAX_BODY_BYTES, image_data_uri, session_request
from magec.studio.photos import display
from magec.studio.session import Studio

#: Where the page's script posts an upload's file name (on the studio's own web server, beside Gradio's routes).
FIRST_LOOK_PATH = "/magec/first-look"

#: The page's script (in ``<head>``, before Gradio's): Gradio's client uploads with ``fetch``, so a wrapper sees
#: the upload's answer (the stored file's name) as soon as it comes and posts it here; the reply's images are laid
#: over ``#projection`` and ``#framed`` (class ``magec-first-look``) until an image of Gradio's own, with a
#: source not shown before, appears there.
FIRST_LOOK_JS = (
    """<script>
(() => {
  const plainFetch = window.fetch.bind(window);
  const overlay = (selector, uri) => {
    const box = document.querySelector(selector);
    if (!box || !uri) return;
    box.querySelectorAll('img.magec-first-look').forEach(old => old.remove());
    const before = new Set([...box.querySelectorAll('img')].map(i => i.src));
    const img = document.createElement('img');
    img.className = 'magec-first-look';
    img.alt = '';
    img.src = uri;
    box.appendChild(img);
    const replaced = new MutationObserver(() => {
      if ([...box.querySelectorAll('img')].some(i => i !== img && i.src && !before.has(i.src))) {
        replaced.disconnect();
        img.remove();
      }
    });
    replaced.observe(box, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
  };
  const look = async (file) => {
    const r = await plainFetch('"""
    + FIRST_LOOK_PATH.lstrip("/")
    + """', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({session: window.__gradio_session_hash__, file})});
    if (r.status !== 200) return;  // none made (no encoder, no face...): Gradio's answer says why
    const d = await r.json();
    await Promise.all([d.framed, d.projection].map(uri => {  // decoded before they are laid over: shown at once
      const ready = new Image();
      ready.src = uri;
      return ready.decode().catch(() => {});
    }));
    overlay('#framed', d.framed);
    overlay('#projection', d.projection);
  };
  window.fetch = async (...args) => {
    const response = await plainFetch(...args);
    try {
      const url = new URL(String((args[0] && args[0].url) || args[0]), location.href);
      if (url.pathname.endsWith('/gradio_api/upload') && response.ok && document.querySelector('#upload')) {
        response.clone().json().then(files => {
          if (Array.isArray(files) && files.length === 1 && typeof files[0] === 'string') look(files[0]);
        }).catch(() => {});
      }
    } catch (e) {}
    return response;
  };
})();
</script>"""
)

#: How the laid-over images sit in their boxes (the page's CSS).
FIRST_LOOK_CSS = (
    "#projection, #framed { position: relative; } "
    ".magec-first-look { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: contain; "
    "image-rendering: pixelated; z-index: 5; background: var(--block-background-fill); }"
)


def parse_look_request(body: bytes) -> tuple[str, str]:
    """The session id and upload file name of a request body; one-line ``MagecError`` for anything else."""
    data, session = session_request(body)
    file = data.get("file")
    if not isinstance(file, str) or not file or len(file) > 1024 or "\x00" in file:
        raise MagecError("missing or bad upload file name")
    return session, file


def first_look_payload(studio: Studio, file: str, fmt: str) -> dict[str, str] | None:
    """The framed photo and the encoder's projection of an upload framed on arrival, as ``data:`` URIs encoded as
    the page's image components encode them (None when the studio made no first look for that file)."""
    made = studio.first_look_ahead(file)
    if made is None:
        return None
    framed, look = made
    return {
        "framed": image_data_uri(display(framed.image), fmt),
        "projection": image_data_uri(display(studio.projection_image(look)), fmt),
    }


def add_first_look_route(blocks: Any, studio: Studio, fmt: str) -> None:
    """Serve ``FIRST_LOOK_PATH`` on the launched page's web app. Replies: 200 with ``{"framed", "projection"}``;
    204 when there is no first look for that file; 400 with ``{"error": one line}`` for a bad request; 404 for a
    session this server does not know."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    def answer(session: str, file: str) -> Response:
        if session not in getattr(getattr(blocks, "state_holder", None), "session_data", {}):
            return JSONResponse({"error": "unknown session: reload the page"}, status_code=404)
        payload = first_look_payload(studio, file, fmt)
        return Response(status_code=204) if payload is None else JSONResponse(payload)

    async def first_look_route(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():  # never more than the limit held
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                break
        try:
            session, file = parse_look_request(body)
        except MagecError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return await run_in_threadpool(answer, session, file)  # waits for the framing: not on the event loop

    blocks.app.add_route(FIRST_LOOK_PATH, first_look_route, methods=["POST"])
