"""The slider's own route: ``POST /magec/render`` draws the edited image and F's caption in one small JSON reply.

Why: through Gradio's event path a slider change cost the front end's dispatch, Gradio's processing (the image
saved to its cache folder), a second GET for the image file and the component's update before the image loaded
(measured in the page: p50 162 ms, p95 201 ms idle on 2 cores; issue 22's target is p95 <= 150 ms). The slider's
``js=`` handler (``SLIDER_JS``) posts the values here and puts the image (a ``data:`` URI, the same encoded bytes
Gradio would have sent) and the caption into the page itself.

Security: the request names the page's session (Gradio's own session id, the one its event requests carry) and
the slider values, never a path; the projection drawn is the one in that session's page state, so a session sees
only its own. An unknown session, a session without a projection, or bad values get one line of error.
"""

from __future__ import annotations

import base64
import io
import json
import math
from typing import Any

from PIL import Image

from magec.errors import MagecError
from magec.studio.session import Projection, Studio
from magec.studio.widgets import rendered

#: Where the page's slider handler posts (on the studio's own web server, beside Gradio's routes).
RENDER_PATH = "/magec/render"
#: The largest request body accepted: a session id and a few slider values fit in far less.
MAX_BODY_BYTES = 4096


def image_data_uri(image: Image.Image, fmt: str) -> str:
    """``image`` encoded as Gradio encodes a component's image (PIL's defaults), as a ``data:`` URI."""
    buffer = io.BytesIO()
    image.save(buffer, fmt.upper())
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def edited_payload(studio: Studio, projection: Projection, values: list[float], fmt: str) -> dict[str, str]:
    """The edited image (data URI) and F's caption of it, for the page's slider handler."""
    image, caption = rendered(studio, projection, values)
    return {"image": image_data_uri(image, fmt), "caption": caption}


def session_request(body: bytes) -> tuple[dict[str, Any], str]:
    """A page route's request body as a JSON object, and the session id it names; one-line ``MagecError`` for
    anything else (both of the page's routes read their bodies through it)."""
    if len(body) > MAX_BODY_BYTES:
        raise MagecError(f"request body above {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MagecError("request body is not JSON") from None
    if not isinstance(data, dict):
        raise MagecError("request body is not a JSON object")
    session = data.get("session")
    if not isinstance(session, str) or not session or len(session) > 128:
        raise MagecError("missing or bad session id")
    return data, session


def parse_request(body: bytes, n_sliders: int) -> tuple[str, list[float]]:
    """The session id and slider values of a request body; one-line ``MagecError`` for anything else."""
    data, session = session_request(body)
    values = data.get("values")
    if not isinstance(values, list) or len(values) != n_sliders:
        raise MagecError(f"expected a list of {n_sliders} slider values")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise MagecError(f"bad slider value {json.dumps(v)[:40]}")
        out.append(float(v))
    return session, out


def session_projection(blocks: Any, state: Any, session: str) -> Projection | None:
    """The projection in ``session``'s page state (``state``: the page's ``gr.State``), or None when that
    session is unknown to the server or has none yet. Never creates a session."""
    sessions = getattr(getattr(blocks, "state_holder", None), "session_data", {})
    found = sessions.get(session)
    if found is None:
        return None
    value = found.state_data.get(state._id)
    projection = value.get("projection") if isinstance(value, dict) else None
    return projection if isinstance(projection, Projection) else None


def add_render_route(blocks: Any, studio: Studio, state: Any, fmt: str) -> None:
    """Serve ``RENDER_PATH`` on the launched page's web app (``blocks.app``, created by ``launch``).

    Replies: 200 with ``{"image", "caption"}``; 204 when the session has no projection yet (nothing to draw, as
    Gradio's handler skipped); 400 with ``{"error": one line}`` for a bad request or a projection that cannot be
    drawn; 404 for a session this server does not know."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    async def read(request: Request) -> tuple[str, list[float]]:
        body = b""
        async for chunk in request.stream():  # never more than the limit held: a large body is refused as it comes
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                break
        return parse_request(body, len(studio.sliders))

    def draw(session: str, values: list[float]) -> Response:
        if session not in getattr(getattr(blocks, "state_holder", None), "session_data", {}):
            return JSONResponse({"error": "unknown session: reload the page"}, status_code=404)
        projection = session_projection(blocks, state, session)
        if projection is None:
            return Response(status_code=204)
        try:
            return JSONResponse(edited_payload(studio, projection, values, fmt))
        except Exception as exc:  # one line under the image, as Gradio's handler showed it (``message``)
            text = str(exc) if isinstance(exc, MagecError) else f"unexpected {type(exc).__name__}: {exc}"
            return JSONResponse({"error": text}, status_code=400)

    async def render_route(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            session, values = await read(request)
        except MagecError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return await run_in_threadpool(draw, session, values)  # rendering holds the CPU: not on the event loop

    blocks.app.add_route(RENDER_PATH, render_route, methods=["POST"])


#: The sliders' ``js=`` handler: post the values to ``RENDER_PATH`` and show the reply in ``#edited`` and
#: ``#caption-edited`` (the text of the paragraph Gradio's Markdown drew, so its next update replaces it as usual).
#: One request at a time per page; changes made meanwhile are coalesced into the latest (Gradio's
#: ``always_last``). Errors are shown under the image as Gradio's handler showed them. The handler returns once the
#: image is shown: the pasted photo's request (the next event) starts then, not while the image decodes.
SLIDER_JS = (
    """
async (...values) => {
  const s = window.__magecEdit || (window.__magecEdit = {busy: false, next: null});
  s.next = values;
  if (s.busy) return [];
  s.busy = true;
  const caption = (text, strong) => {  // the paragraph Gradio's Markdown drew: changed in place, never replaced
    const p = document.querySelector('#caption-edited .md p');
    if (!p) return;
    if (!strong) { p.textContent = text; return; }
    const b = document.createElement('strong');
    b.textContent = strong;
    p.replaceChildren(b, ' ' + text);
  };
  try {
    while (s.next) {
      const v = s.next; s.next = null;
      const r = await fetch('"""
    + RENDER_PATH.lstrip("/")
    + """', {method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({session: window.__gradio_session_hash__, values: v})});
      if (r.status === 204) continue;
      const d = await r.json().catch(() => ({error: `the server answered ${r.status}`}));
      if (d.error) { caption(d.error, 'Could not use this:'); continue; }
      const img = document.querySelector('#edited img');
      const ready = new Image();  // decoded before it is shown: the shown image then swaps at once
      ready.src = d.image;
      await ready.decode().catch(() => {});
      if (img) img.src = d.image;
      caption(d.caption, '');
    }
  } finally { s.busy = false; }
  return [];
}
"""
)
