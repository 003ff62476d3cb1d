"""Framing an upload as it arrives, before the page asks for it.

The browser handles the upload route's answer for about 100 ms before it sends the request that frames the
photo; dlib's detection (the bulk of the framing) runs in that gap instead of after it, and with an encoder the
first look follows it there (the encoder's code and its image). ``UploadWatch`` sees the files Gradio's upload
route stored and hands them to the studio; ``FramingAhead`` keeps the few framings under way, and the first looks
made with them, until the page's request takes them.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

#: How many uploads framed on arrival wait for the page's request for them: the request of each comes a fraction
#: of a second later; one never sent (the page closed) is let go after that many.
PREPARED_UPLOADS = 2


def file_key(path: Path) -> tuple[int, int] | None:
    """A file's size and modification time (what tells that an upload framed ahead is still the same file)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


class FramingAhead:
    """The framings started for uploads as they arrived, by resolved path; one background thread frames them."""

    def __init__(self, keep: int = PREPARED_UPLOADS) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._started: OrderedDict[Path, tuple[tuple[int, int], Future]] = OrderedDict()
        #: First looks made right after their framing, by the framed photo's id (checked through a weak reference).
        self._looks: OrderedDict[int, tuple[weakref.ref, Any]] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="magec-upload")

    def __len__(self) -> int:
        return len(self._started)

    def start(self, path: Path, key: tuple[int, int], frame: Callable[[], Any]) -> None:
        """Frame ``path`` (whose size and time are ``key``) with ``frame()`` in the background."""
        try:
            future = self._pool.submit(frame)
        except RuntimeError:  # closing
            return
        with self._lock:
            self._started[path] = (key, future)
            while len(self._started) > self.keep:
                self._started.popitem(last=False)[1][1].cancel()

    def take(self, path: Path) -> Future | None:
        """The framing started for ``path``, when the file is still the one it framed (and forget it)."""
        with self._lock:
            key, future = self._started.pop(path, (None, None))
        if future is None or key != file_key(path) or future.cancelled():
            return None
        return future

    def run(self, work: Callable[[], Any]) -> None:
        """Run ``work`` on the framing thread (after the framings already under way)."""
        try:
            self._pool.submit(work)
        except RuntimeError:  # closing
            pass

    def keep_look(self, framed: Any, look: Any) -> None:
        """Keep ``look``, the first look made from ``framed`` (a photo framed here), until ``take_look``."""
        with self._lock:
            self._looks[id(framed)] = (weakref.ref(framed), look)
            while len(self._looks) > self.keep:
                self._looks.popitem(last=False)

    def look_for(self, framed: Any) -> Any | None:
        """The first look kept for this very ``framed`` object, if any (kept until newer looks push it out: the
        page's request and its first-look route both ask for it)."""
        with self._lock:
            ref, look = self._looks.get(id(framed), (None, None))
        return look if ref is not None and ref() is framed else None

    def peek(self, path: Path) -> Future | None:
        """The framing started for ``path`` when the file is still the one it framed, left for ``take``."""
        with self._lock:
            key, future = self._started.get(path, (None, None))
        if future is None or key != file_key(path) or future.cancelled():
            return None
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class UploadWatch:
    """ASGI middleware that hands each file Gradio's upload route has just stored to ``studio.prepare_upload`` as
    the route's answer leaves (anything outside the studio's upload folder is ignored there)."""

    def __init__(self, app: Any, studio: Any) -> None:
        self.app, self.studio = app, studio

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/gradio_api/upload"):
            await self.app(scope, receive, send)
            return
        status, body = [0], []

        async def watched(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body" and status[0] == 200:
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._prepare(b"".join(body))
            await send(message)

        await self.app(scope, receive, watched)

    def _prepare(self, body: bytes) -> None:
        try:
            paths = json.loads(body)
        except ValueError:
            return
        for path in paths if isinstance(paths, list) else ():
            if isinstance(path, str):
                self.studio.prepare_upload(path)
