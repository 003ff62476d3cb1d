"""Background jobs: one worker thread per studio runs inversions one at a time, in arrival order.

An inversion fills a device (and, on a CPU, its cores); two at once only make both slow. Viewers are
never queued: rendering a slider position is a single generator pass and runs in the request's thread.
A job reports its progress through ``Job.report`` (e.g. from ``invert``'s step callback) and is
stopped by ``Job.cancel``: the callback then returns True and ``invert`` returns early.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from magec.errors import MagecError

log = logging.getLogger("magec")

#: Job states, in the order a job goes through them.
QUEUED, RUNNING, DONE, CANCELLED, FAILED = "queued", "running", "done", "cancelled", "failed"

_ids = itertools.count(1)


@dataclass(eq=False)
class Job:
    """One unit of work and what it has done so far (read by the page while it runs)."""

    #: Who submitted it (a browser session); cancelling is per owner.
    owner: str
    work: Callable[[Job], Any]
    id: int = field(default_factory=lambda: next(_ids))
    state: str = QUEUED
    step: int = 0
    total: int = 0
    label: str = ""
    result: Any = None
    #: One line for the page when the job failed.
    error: str = ""
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def report(self, step: int, total: int, label: str = "") -> bool:
        """Record progress; returns True when the job should stop (the shape ``invert``'s callback wants)."""
        self.step, self.total = step, total
        if label:
            self.label = label
        return self._cancel.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the job has finished (done, cancelled or failed)."""
        return self._finished.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()


class JobQueue:
    """A FIFO of jobs served by one worker thread (one queue per device)."""

    def __init__(self, name: str = "cpu") -> None:
        self.name = name
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._pending: list[Job] = []
        self._lock = threading.Lock()
        self._closed = False
        self._worker = threading.Thread(target=self._serve, name=f"magec-jobs-{name}", daemon=True)
        self._worker.start()

    def submit(self, owner: str, work: Callable[[Job], Any]) -> Job:
        """Queue ``work(job)``; an earlier unfinished job of the same owner is cancelled (one per browser)."""
        self.cancel(owner)
        job = Job(owner, work)
        with self._lock:
            if self._closed:  # its worker has stopped: the job would wait forever
                raise MagecError("the studio has been closed: start a new one")
            self._pending.append(job)
        self._queue.put(job)
        return job

    def ahead(self, job: Job) -> int:
        """How many jobs run or wait before ``job`` (0 once it runs)."""
        with self._lock:
            return self._pending.index(job) if job in self._pending else 0

    def has_work(self, owner: str) -> bool:
        """True while a job of ``owner`` waits or runs."""
        with self._lock:
            return any(j.owner == owner for j in self._pending)

    def cancel(self, owner: str) -> int:
        """Cancel every unfinished job of ``owner``; returns how many.

        A job still waiting ends at once (it never waits for the one ahead); a running one stops at its next
        step (its work polls ``Job.report``)."""
        with self._lock:
            jobs = [j for j in self._pending if j.owner == owner]
            for job in jobs:
                job.cancel()
                if job.state == QUEUED:
                    self._drop(job)
        return len(jobs)

    def _drop(self, job: Job) -> None:
        """End a job that never ran (the caller holds the lock); the worker skips it when it comes up."""
        job.state = CANCELLED
        self._pending.remove(job)
        job._finished.set()

    def close(self) -> None:
        """Cancel everything and stop the worker once its current job returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for job in list(self._pending):
                job.cancel()
                if job.state == QUEUED:
                    self._drop(job)
        self._queue.put(None)

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.state != QUEUED:  # cancelled while it waited: already ended
                    continue
                job.state = RUNNING
            try:
                job.result = job.work(job)
                job.state = CANCELLED if job.cancelled else DONE
            except MagecError as exc:
                job.state, job.error = FAILED, str(exc)
            except Exception as exc:  # a bug must not stop the worker: every later job would hang
                log.exception("job %d failed", job.id)
                job.state, job.error = FAILED, f"unexpected {type(exc).__name__}: {exc}"
            finally:
                with self._lock:
                    if job in self._pending:
                        self._pending.remove(job)
                job._finished.set()


def step_timer(seconds: dict[str, list[float]]) -> Any:
    """An ``invert`` step callback that appends each step's wall time to ``seconds[part]`` (part: the phase
    number, or "generator" for PTI's tuning steps) and never stops the run."""
    last = [time.perf_counter()]

    def on_step(info: Any) -> bool:
        now = time.perf_counter()
        part = "generator" if info.target == "generator" else str(info.phase)
        seconds.setdefault(part, []).append(now - last[0])
        last[0] = now
        return False

    return on_step
