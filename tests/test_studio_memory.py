"""The studio lets go: ten viewers open and close a session each, and the process's memory returns to its level.

Each session does what a viewer does (upload a photo, invert it with a short ``magec+pti``, render an edit, paste
it back, download) and then ends as a closed tab does (``Studio.end_session``). Its page state is kept afterwards,
as Gradio keeps a closed session's state for an hour: what the studio made for it must be released anyway.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
from PIL import Image

from magec.errors import MagecError

SESSIONS = 10
#: The most the process may grow over sessions 2..10 (the first warms up: models, caches, allocator pools).
MAX_GROWTH_MB = 100


def rss_mb() -> float:
    """This process's resident memory (MB), after a garbage collection."""
    gc.collect()
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _session(studio, photo: Image.Image, owner: str) -> dict:
    """One viewer's visit, ended as a closed tab ends it; returns the page state the web framework would keep."""
    upload = studio.upload_root / f"{owner}.png"
    photo.save(upload)
    framed = studio.read_upload(upload, owner=owner)
    studio.discard_upload(upload)
    job = studio.submit(owner, framed, ("magec+pti",))
    assert job.wait(120) and job.state == "done", job.error
    projection = job.result["magec+pti"]
    assert projection.tuned is not None
    spec = next(s for s in studio.sliders if s.editor == "interfacegan")
    values = {spec.key: spec.maximum}
    studio.render(projection, values)
    assert studio.pasted(projection, values).size == photo.size
    files = studio.downloads(projection, values, owner)
    assert len(files) == 5 and all(p.is_file() for p in files)
    studio.end_session(owner)
    assert not any(p.exists() for p in files)  # its downloads went with it
    return {"photo": framed, "projection": projection, "job": job}


@pytest.mark.slow
def test_memory_returns_after_ten_sessions_end(studio, one_thread):
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((1024, 1024), Image.Resampling.BILINEAR)
    kept = [_session(studio, photo, "viewer-0")]  # warm-up: not counted
    before = rss_mb()
    for k in range(1, SESSIONS):
        kept.append(_session(studio, photo, f"viewer-{k}"))
    growth = rss_mb() - before
    print(f"RSS growth over sessions 2..{SESSIONS}: {growth:.1f} MB (from {before:.0f} MB)")
    assert growth < MAX_GROWTH_MB, f"{growth:.0f} MB kept after {SESSIONS - 1} sessions ended"

    # What the kept state still points to was released: no tuned generator, no photo, and it cannot be drawn.
    last = kept[-1]
    assert last["projection"].tuned is None and last["photo"].photo is None and not last["photo"].can_paste
    with pytest.raises(MagecError, match="session has ended"):
        studio.render(last["projection"], {})
    assert not studio._owned and not studio._download_dirs and not studio._ended  # nothing keyed by a gone viewer


def test_a_session_that_ends_while_its_job_runs_releases_what_the_job_makes(studio):
    import threading

    started, results = threading.Event(), {}
    framed = studio.example("astronaut", owner="leaver")
    job = studio.submit("leaver", framed, ("magec+pti",))
    original = job.report

    def report(step, total, label=""):
        started.set()
        return original(step, total, label)

    job.report = report
    assert started.wait(60)
    assert studio.end_session("leaver") == 1
    assert job.wait(120)
    results = job.result or {}
    assert framed.photo is None  # released at once
    for projection in results.values():  # made after the session ended: released as it was made
        assert projection.released and projection.tuned is None
    assert not studio._ended and "leaver" not in studio._owned
