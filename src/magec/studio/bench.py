"""The studio's speed figures for ``magec bench``, measured through the running web server.

- ``studio_edit_ms``: a slider change -> the new edited image returned by the server (p50 and p95 over
  many changes): the HTTP request to the slider's route (``magec.studio.edit_route``), rendering
  (``render_latent``), F's caption and PNG encoding, as the page does it (Gradio's own Python client opens the
  session and inverts).
- ``studio_inversion_images_per_s``: one full magec inversion (the paper's schedule) of the astronaut
  through the server's job queue, from the click to the projection shown; compare with ``images_per_s``
  at batch 1 of ``magec bench`` (the same optimisation without the page).
- ``studio_paste_ms``: one slider value -> the edit rendered and pasted back into a 1024 px photo (the
  astronaut, enlarged), the session's own work behind "Your photo, edited" (median of ``changes``), and the
  first paste, which also computes the face mask.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from magec.errors import MagecError
from magec.pipeline import Pipeline


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def studio_figures(pipeline: Pipeline, changes: int = 40, steps_scale: float = 1.0) -> dict:
    """Serve the studio for ``pipeline`` on a free local port, and time slider changes and one inversion."""
    from magec.studio.app import configure_gradio

    with tempfile.TemporaryDirectory(prefix="magec-studio-bench-") as folder:
        uploads, downloads = Path(folder) / "uploads", Path(folder) / "downloads"
        uploads.mkdir()
        downloads.mkdir()
        if "gradio" in sys.modules:
            raise MagecError("the studio bench must configure Gradio before it is imported")
        configure_gradio(uploads)
        from gradio_client import Client

        from magec.studio.app import serve
        from magec.studio.edit_route import RENDER_PATH
        from magec.studio.session import Studio

        studio = Studio(pipeline, steps_scale=steps_scale, upload_root=uploads)
        port = _free_port()
        app = serve(studio, "127.0.0.1", port, None, block=False)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(downloads))
            zeros = [0.0] * len(studio.sliders)
            client.predict(0, api_name="/astronaut")
            started = time.perf_counter()
            client.predict("magec", *zeros, api_name="/invert")
            inversion_s = time.perf_counter() - started
            reach = studio.sliders[0].maximum
            times = []
            # A slider change as the page sends it: one POST to the studio's route (``edit_route``), whose reply
            # holds the image and its caption.
            for k in range(changes + 3):
                values = list(zeros)
                values[0] = reach * ((k % 20) + 1) / 20 * (1 if k % 2 else -1)
                body = {"session": client.session_hash, "values": values}
                started = time.perf_counter()
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}{RENDER_PATH}",
                    json.dumps(body).encode(),
                    {"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    if "image" not in json.loads(response.read()):
                        raise MagecError("studio bench: the slider's route drew no image")
                if k >= 3:  # the first changes warm up
                    times.append((time.perf_counter() - started) * 1000)
            getattr(client, "close", lambda: None)()
            paste = _paste_figures(studio, changes)
        finally:
            with contextlib.redirect_stdout(sys.stderr):  # Gradio says goodbye on stdout; `--json` owns it
                app.close()
            studio.close()
    return {
        "studio_edit_ms": {
            "p50": round(float(np.percentile(times, 50)), 1),
            "p95": round(float(np.percentile(times, 95)), 1),
            "changes": changes,
        },
        "studio_inversion_images_per_s": round(1.0 / inversion_s, 4),
        "studio_paste_ms": paste,
    }


def _paste_figures(studio, changes: int) -> dict:
    """Median time of ``Studio.pasted`` on a 1024 px photo (a short no-magec projection is enough to paste)."""
    from PIL import Image

    from magec.studio.photos import astronaut_photo

    photo = astronaut_photo().resize((1024, 1024), Image.Resampling.LANCZOS)
    job = studio.submit("bench", studio.frame(photo), ("no-magec",))
    if not job.wait(600) or job.state != "done":
        raise MagecError(f"studio bench: the projection for the paste timing failed ({job.error})")
    projection = job.result["no-magec"]
    slider = studio.sliders[0]
    started = time.perf_counter()
    studio.pasted(projection, {})
    first = (time.perf_counter() - started) * 1000
    times = []
    for k in range(changes):
        values = [0.0] * len(studio.sliders)
        values[0] = slider.maximum * ((k % 10) + 1) / 10
        started = time.perf_counter()
        studio.pasted(projection, studio.slider_values(values))
        times.append((time.perf_counter() - started) * 1000)
    return {"first": round(first, 1), "p50": round(float(np.percentile(times, 50)), 1), "photo_side": 1024}
