"""Many workers for ``magec invert`` and ``magec evaluate``, on one machine or a Ray cluster.

Ray is imported only when workers are asked for (``import magec`` and ``magec --help`` never import it):
one actor per worker loads the pipeline once and is placed on a GPU (or a fraction of one) or on CPU
slots; batches are dealt to whichever worker is free, and a batch whose worker dies is given to another.
Workers write each image's outputs atomically; the driver only updates the output index, the progress
bar and the final report, so nothing is half-written or counted twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

from magec import validation
from magec.errors import MagecError

#: The Ray release magec is tested with (requirements.txt pins it).
RAY_VERSION = "2.60.0"


def require_ray() -> ModuleType:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MagecError(
            f"--workers and --ray need Ray, which is not installed; install it with `pip install ray=={RAY_VERSION}` "
            "(`make install` does)"
        ) from None
    return ray


@dataclass(frozen=True)
class WorkerOptions:
    """Where the work runs: ``workers`` local actors, or a running cluster at ``address`` ("auto" finds it)."""

    #: Number of actors; with ``address`` and None, one per GPU of the cluster (or per ``threads`` CPUs).
    workers: int | None = None
    #: A running Ray cluster ("auto", "HOST:PORT" or "ray://HOST:PORT"); None starts a local instance.
    address: str | None = None
    #: GPUs reserved per actor (a fraction shares a GPU); None: 1 when the cluster has GPUs, else 0.
    gpus_per_worker: float | None = None
    #: torch threads (and Ray CPU slots) per actor; fixed, so results do not depend on the worker count.
    threads_per_worker: int = 1
    #: Times a batch is tried on a fresh worker after its worker died, before its images count as failed.
    max_attempts: int = 3
    #: Object store of a local instance (bytes): only small messages travel, the images stay on disk.
    object_store_bytes: int = 100 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.workers is None and self.address is None:
            raise MagecError("distributed runs need --workers N or --ray ADDRESS")
        if self.workers is not None:
            validation.integer("--workers", self.workers, 1)
        if self.address is not None and not self.address.strip():
            raise MagecError("--ray: expected auto, HOST:PORT or ray://HOST:PORT")
        if self.gpus_per_worker is not None:
            validation.positive("--gpus-per-worker", self.gpus_per_worker)
            if self.gpus_per_worker > 1 and not math.isclose(self.gpus_per_worker, round(self.gpus_per_worker)):
                raise MagecError(f"--gpus-per-worker {self.gpus_per_worker}: above 1 it must be a whole number")
        validation.integer("--threads-per-worker", self.threads_per_worker, 1)
        validation.integer("max_attempts", self.max_attempts, 1)
