"""A pool of Ray actors that each load a model once and take batches until none are left.

Batches are handed to whichever actor is free (their composition is fixed before, so which actor runs a
batch changes nothing in the results). When an actor dies (killed, out of memory, node lost) its batch
goes back to the front of the queue for another actor and a fresh actor takes the dead one's place; after
``max_attempts`` deaths on one batch its items are reported as failed. A Python exception inside a task
is the task's own business: tasks catch and report per item, so one bad image never stops the rest.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from magec.distributed import WorkerOptions, require_ray
from magec.errors import MagecError

T = TypeVar("T")
R = TypeVar("R")


def _cause(exc: BaseException) -> str:
    """The original error behind a Ray exception, as one line."""
    seen = exc
    for _ in range(5):
        inner = getattr(seen, "cause", None)
        if inner is None or inner is seen or not isinstance(inner, BaseException):
            break
        seen = inner
    text = str(seen).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    for line in reversed(lines):  # a worker's traceback ends with "module.Type: message"
        head, _, rest = line.strip().partition(": ")
        if rest and (head.endswith("MagecError") or head.endswith("Error")):
            return " ".join(rest.split()) if head.endswith("MagecError") else f"{head.rsplit('.', 1)[-1]}: {rest}"
    return " ".join(text.split())[:300] or type(seen).__name__


def connect(options: WorkerOptions) -> bool:
    """Join the cluster at ``options.address`` or start a local instance; True when this call started Ray."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if options.address is None:
        ray.init(
            num_cpus=(options.workers or 1) * options.threads_per_worker,
            include_dashboard=False,
            object_store_memory=options.object_store_bytes,
            **quiet,
        )
        return True
    _check_reachable(options.address)
    try:
        ray.init(address=options.address, **quiet)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError... all one line
        raise MagecError(f"--ray {options.address}: cannot join a Ray cluster ({_cause(exc)})") from None
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once an address nothing listens on (Ray itself retries such an address for minutes)."""
    if address == "auto":
        return  # Ray finds the local cluster's address file, or says at once that there is none
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise MagecError(f"--ray {address}: cannot join a Ray cluster (nothing answers there: {exc})") from None


def resources_per_worker(options: WorkerOptions, device: str) -> tuple[int, float]:
    """(CPU slots, GPUs) each actor reserves; GPUs only when the cluster has some and the device allows."""
    ray = require_ray()
    gpus_total = float(ray.cluster_resources().get("GPU", 0.0))
    if options.gpus_per_worker is not None:
        if device == "cpu":
            raise MagecError("--gpus-per-worker with --device cpu: drop one of them")
        if gpus_total < options.gpus_per_worker:
            raise MagecError(
                f"--gpus-per-worker {options.gpus_per_worker}: the Ray cluster has {gpus_total:g} GPUs; "
                "start it on GPU machines or leave the option out"
            )
        return options.threads_per_worker, options.gpus_per_worker
    if device.startswith("cuda") and gpus_total == 0:
        raise MagecError(f"--device {device}: the Ray cluster has no GPUs")
    return options.threads_per_worker, (1.0 if gpus_total > 0 and device != "cpu" else 0.0)


def worker_count(options: WorkerOptions, cpus: int, gpus: float) -> int:
    """``options.workers``, or as many actors as the cluster holds (one per GPU share, else per CPU slots)."""
    if options.workers is not None:
        return options.workers
    ray = require_ray()
    total = ray.cluster_resources()
    n = int(total.get("GPU", 0.0) // gpus) if gpus else int(total.get("CPU", 1.0) // max(cpus, 1))
    return max(1, n)


class WorkerPool(Generic[T, R]):
    """``with WorkerPool(options, Worker, device, *init) as pool: pool.map(tasks, done, lost)``.

    ``Worker(*init)`` is built once per actor (it loads the model); ``Worker.run(*task)`` handles one task
    and ``Worker.ready()`` returns the actor's process id.
    """

    def __init__(self, options: WorkerOptions, worker: type, device: str, *init: Any) -> None:
        self.options, self.worker, self.device, self.init = options, worker, device, init
        self.actors: list[Any] = []
        self.pids: list[int] = []
        self.replaced = 0
        self._started = False
        self._remote: Any = None

    def __enter__(self) -> WorkerPool[T, R]:
        ray = require_ray()
        self._started = connect(self.options)
        try:
            cpus, gpus = resources_per_worker(self.options, self.device)
            self._remote = ray.remote(self.worker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0)
            self.actors = [self._remote.remote(*self.init) for _ in range(worker_count(self.options, cpus, gpus))]
            self.pids = self._ready(self.actors)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ready(self, actors: Sequence[Any]) -> list[int]:
        """Wait until every actor has loaded its model; a failure to load is the run's one-line error."""
        ray = require_ray()
        try:
            return list(ray.get([a.ready.remote() for a in actors]))
        except ray.exceptions.RayError as exc:
            raise MagecError(f"a worker could not start: {_cause(exc)}") from None

    def close(self) -> None:
        """Stop this pool's actors (and the local Ray instance it started); safe to call twice."""
        ray = require_ray()
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self.actors = []
        if self._started and ray.is_initialized():
            ray.shutdown()
            self._started = False

    def _replace(self, slot: int) -> None:
        ray = require_ray()
        self.replaced += 1
        if self.replaced > 3 * max(len(self.actors), 1) + 3:
            raise MagecError(f"workers keep dying ({self.replaced} replaced); see the Ray logs under /tmp/ray")
        try:
            ray.kill(self.actors[slot], no_restart=True)
        except Exception:  # already gone
            pass
        self.actors[slot] = self._remote.remote(*self.init)

    def map(
        self,
        tasks: Sequence[T],
        done: Callable[[T, R], None],
        lost: Callable[[T, str], None],
        started: Callable[[T, int], None] | None = None,
    ) -> None:
        """Run ``tasks`` (tuples of ``run``'s arguments) on the actors; ``done(task, result)`` for each
        finished one, ``lost(task, reason)`` for one that could not be run; ``started(task, pid)`` on dispatch."""
        ray = require_ray()
        queue: deque[T] = deque(tasks)
        attempts: dict[int, int] = {}
        free = deque(range(len(self.actors)))
        running: dict[Any, tuple[int, T]] = {}
        starting: dict[Any, int] = {}  # a replacement actor loading its model
        errors = ray.exceptions
        worker_lost = (errors.RayActorError, errors.WorkerCrashedError, errors.ObjectLostError, errors.NodeDiedError)
        while queue or running:
            while queue and free:
                slot, task = free.popleft(), queue.popleft()
                running[self.actors[slot].run.remote(*task)] = (slot, task)
                if started is not None:
                    started(task, self.pids[slot])
            ready, _ = ray.wait([*running, *starting], num_returns=1)
            ref = ready[0]
            if ref in starting:
                slot = starting.pop(ref)
                try:
                    self.pids[slot] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise MagecError(f"a worker could not restart: {_cause(exc)}") from None
                free.append(slot)
                continue
            slot, task = running.pop(ref)
            try:
                result = ray.get(ref)
            except worker_lost as exc:
                attempts[id(task)] = attempts.get(id(task), 0) + 1
                if attempts[id(task)] < self.options.max_attempts:
                    queue.appendleft(task)  # to the next free actor
                else:
                    lost(task, f"its worker died {attempts[id(task)]} times ({_cause(exc)})")
                self._replace(slot)
                starting[self.actors[slot].ready.remote()] = slot
                continue
            except ray.exceptions.RayTaskError as exc:
                lost(task, _cause(exc))
            else:
                done(task, result)
            free.append(slot)
