"""Memory budgets and chunk sizes for work batched over images, and splitting on out-of-memory.

Every place that pushes many images through a network (``prepare``'s sampling and describing, evaluation's
projections and ECS re-projections, study pools, edit grids, folder inversion) asks :func:`chunk_size` how
many images to take at once. The answer comes from a *budget* (:func:`memory_budget`: on a GPU a share of the
device's free memory, ``torch.cuda.mem_get_info``; on a CPU a share of the available RAM from
``/proc/meminfo``, with a portable fallback) and a *per-image cost* estimated from the generator's
resolution and feature maps (:func:`synthesis_bytes`, :func:`inversion_bytes`). A user's ``--batch-size``
always overrides the choice. Work whose result does not depend on the chunk (pure forward passes) runs
through :func:`map_chunks`, which halves the chunk and retries when the device still runs out of memory;
when one image at a time does not fit either, it raises a one-line :class:`~magec.errors.MagecError`
naming the option to lower.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from magec.errors import MagecError

log = logging.getLogger("magec")

T = TypeVar("T")

#: Share of the free GPU memory a chunk may plan to use (the rest: fragmentation, cuDNN workspaces, other users).
GPU_SHARE = 0.7
#: Share of the available RAM a chunk may plan to use on a CPU ...
CPU_SHARE = 0.5
#: ... and at most this much: on a CPU a chunk larger than a few images runs no faster, it only holds more
#: memory (and a budget that grew with the machine's RAM would make the peak depend on the machine).
CPU_CAP_BYTES = 4 * 2**30
#: Budget when no figure can be read at all (neither /proc/meminfo nor sysconf).
FALLBACK_BYTES = 4 * 2**30
#: Per-image cost as a multiple of the widest activation (bytes of the largest feature map of one image):
#: a forward pass without gradients holds a few maps at once (input, output, the upsampling's padded
#: intermediates); one inversion step keeps every layer's activations for the backward pass.
#: Calibrated on StyleGAN2 1024 (config-f): a no-grad synthesis peaks at about 5x the widest map on CPU,
#: an fp32 W+ step at about 22x on a GPU (issue 19's 22.6 GB at batch 8).
SYNTHESIS_FACTOR = 8.0
INVERSION_FACTOR = 24.0
#: Below this factor an inversion step cannot fit by any implementation we know of: the floor of the
#: up-front refusal of an inversion ``--batch-size`` (so it never refuses a batch that might still fit).
INVERSION_FLOOR = 6.0


def gib(n: float) -> str:
    """``n`` bytes as ``"9.1 GiB"``."""
    return f"{n / 2**30:.1f} GiB"


@dataclass(frozen=True)
class Budget:
    """Bytes a chunk may use on ``device``, and where the figure came from (for the log line)."""

    bytes: int
    device: str
    source: str

    def __str__(self) -> str:
        return self.source


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_ram() -> int | None:
    """Available RAM in bytes: ``MemAvailable`` of /proc/meminfo, else sysconf's free pages; None if unknown."""
    found = _meminfo_available()
    if found is not None:
        return found
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def memory_budget(device: str | torch.device = "cpu", share: float | None = None) -> Budget:
    """What a chunk of work may use on ``device``: a share of its free memory (GPU) or of the available RAM
    (CPU, at most :data:`CPU_CAP_BYTES` unless ``share`` is 1: all of it, as :func:`check_fits` asks)."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        share = GPU_SHARE if share is None else share
        fraction = _process_fraction(index)
        if fraction < 1.0:  # a Ray worker with --gpus-per-worker < 1: its part of the device, not all that is free
            mine = max(0, int(fraction * total) - torch.cuda.memory_allocated(index))
            if mine < free:
                return Budget(
                    int(mine * share), f"cuda:{index}", f"{gib(mine)} of this worker's {fraction:g} of cuda:{index}"
                )
        return Budget(int(free * share), f"cuda:{index}", f"{gib(free)} free on cuda:{index}")
    share = CPU_SHARE if share is None else share
    ram = available_ram()
    if ram is None:
        return Budget(FALLBACK_BYTES, "cpu", f"{gib(FALLBACK_BYTES)} assumed, RAM unknown")
    if ram * share > CPU_CAP_BYTES and share < 1.0:
        return Budget(CPU_CAP_BYTES, "cpu", f"{gib(CPU_CAP_BYTES)} of {gib(ram)} RAM available")
    return Budget(int(ram * share), "cpu", f"{gib(ram)} RAM available")


def _process_fraction(index: int) -> float:
    """The share of the device this process may allocate (``torch.cuda.set_per_process_memory_fraction``)."""
    get = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    if get is None:
        return 1.0
    try:
        return float(get(index))
    except (RuntimeError, TypeError, ValueError):
        return 1.0


def limit_process_share(device: str | torch.device, fraction: float | None) -> None:
    """Let this process allocate at most ``fraction`` of its GPU (a Ray worker's ``--gpus-per-worker``), so
    that workers sharing a device size their chunks from their own part. No effect on a CPU or at >= 1."""
    device = torch.device(device)
    if fraction is None or fraction >= 1.0 or device.type != "cuda" or not torch.cuda.is_available():
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.cuda.set_per_process_memory_fraction(float(fraction), index)


def widest_activation_bytes(generator: Any) -> int:
    """Bytes of the largest feature map one image passes through in ``generator`` (float32).

    StyleGAN2-like generators (a ``config.channel_table()``: resolution -> feature maps) give it exactly;
    any other generator is assumed to end in 64 maps at its resolution (the DCGAN's last hidden layer has 64
    at half its resolution, so this errs on the safe side).
    """
    config = getattr(generator, "config", None)
    table = getattr(config, "channel_table", None)
    if callable(table):
        return 4 * max(c * r * r for r, c in table().items())
    resolution = int(getattr(generator, "resolution", 0) or 256)
    return 4 * 64 * resolution * resolution


def network_bytes(resolution: int, width: int = 64) -> int:
    """Estimated peak bytes per image of a no-grad image network (describer, LPIPS/VGG, identity) whose first
    stage runs ``width`` maps at the image's own ``resolution``."""
    return int(SYNTHESIS_FACTOR * 4 * width * resolution * resolution)


def synthesis_bytes(generator: Any) -> int:
    """Estimated peak bytes per image of a forward pass without gradients (synthesis, describing)."""
    return int(SYNTHESIS_FACTOR * widest_activation_bytes(generator))


def inversion_bytes(generator: Any, factor: float = INVERSION_FACTOR) -> int:
    """Estimated peak bytes per image of one inversion step (forward + losses + backward)."""
    return int(factor * widest_activation_bytes(generator))


@dataclass(frozen=True)
class Chunking:
    """A chosen chunk size and why (``auto`` from the budget, or the user's override)."""

    size: int
    auto: bool
    budget: Budget | None = None

    def __str__(self) -> str:
        if not self.auto:
            return f"chunks of {self.size} (--batch-size)"
        return f"chunks of {self.size} (auto, {self.budget})"


def chunk_size(
    per_item_bytes: int,
    device: str | torch.device = "cpu",
    budget: Budget | int | None = None,
    cap: int | None = None,
    override: int | None = None,
) -> Chunking:
    """How many items to process at once: ``override`` when given, else the budget over the per-item cost.

    ``budget`` defaults to :func:`memory_budget` of ``device`` (an int is taken as bytes); the result is at
    least 1 and at most ``cap``.
    """
    if override is not None:
        if override < 1:
            raise MagecError(f"--batch-size {override}: must be at least 1")
        return Chunking(int(override), auto=False)
    if budget is None:
        budget = memory_budget(device)
    elif isinstance(budget, int):
        budget = Budget(budget, str(torch.device(device)), f"{gib(budget)} budget")
    size = max(1, budget.bytes // max(1, int(per_item_bytes)))
    if cap is not None:
        size = min(size, max(1, int(cap)))
    return Chunking(int(size), auto=True, budget=budget)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the device or the host running out of memory (torch's OOM, MemoryError, ...)."""
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text
    return False


def out_of_memory_error(
    batch: int, resolution: int | None, device: str | torch.device, option: str = "--batch-size"
) -> MagecError:
    """The one line an out-of-memory ends with: where, at which batch, and the option to lower."""
    what = f"{resolution}-px images" if resolution else "images"
    return MagecError(f"out of memory at batch {batch} of {what} on {torch.device(device)}: lower {option}")


def release_memory(device: str | torch.device) -> None:
    """Give cached blocks back after an out-of-memory so that a smaller retry can use them."""
    gc.collect()
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def map_chunks(
    fn: Callable[[int, int], T],
    n: int,
    size: int,
    *,
    device: str | torch.device = "cpu",
    resolution: int | None = None,
    option: str = "--batch-size",
    what: str = "",
) -> list[T]:
    """``[fn(start, stop) for each chunk of range(n)]`` with chunks of ``size``, halving it on out-of-memory.

    Use it only where ``fn``'s results do not depend on the chunk (forward passes; seeded inputs drawn up
    front). A chunk that runs out of memory is retried at half the size, down to 1; then the one-line error
    of :func:`out_of_memory_error` is raised. ``fn`` must not keep partial effects of a failed call.
    """
    size = max(1, int(size))
    results: list[T] = []
    start = 0
    while start < n:
        stop = min(n, start + size)
        failed = False
        try:
            results.append(fn(start, stop))
        except Exception as exc:  # only out-of-memory is handled; everything else re-raised
            if not is_out_of_memory(exc):
                raise
            failed = True
        if not failed:
            start = stop
            continue
        # outside the except block: the traceback (and the tensors its frames hold) is gone
        release_memory(device)
        if stop - start <= 1:
            raise out_of_memory_error(1, resolution, device, option) from None
        size = max(1, (stop - start) // 2)
        log.info(
            "out of memory at %d %s on %s: retrying in chunks of %d",
            stop - start,
            what or "images",
            torch.device(device),
            size,
        )
    return results


def check_fits(
    batch: int,
    per_item_bytes: int,
    device: str | torch.device,
    resolution: int | None,
    option: str = "--batch-size",
    budget: Budget | None = None,
) -> None:
    """Refuse up front a ``batch`` that obviously cannot fit: its estimate exceeds all the memory there is.

    Meant for work whose results depend on the batch (inversions), which therefore cannot be split on
    out-of-memory; ``per_item_bytes`` should be a floor (e.g. :func:`inversion_bytes` with
    :data:`INVERSION_FLOOR`) so that a batch that might fit is never refused.
    """
    budget = budget or memory_budget(device, share=1.0)
    need = batch * per_item_bytes
    if need > budget.bytes:
        what = f"{resolution}-px images" if resolution else "images"
        raise MagecError(
            f"{option} {batch}: {batch} {what} need at least {gib(need)} on {torch.device(device)}, "
            f"which has {budget}: lower {option}"
        )


def check_inversion_batch(generator: Any, batch: int, device: str | torch.device) -> None:
    """Refuse up front an inversion ``--batch-size`` that cannot fit on ``device`` even at the leanest step
    (:data:`INVERSION_FLOOR` times the widest activation per image, against all the memory there is)."""
    check_fits(batch, inversion_bytes(generator, INVERSION_FLOOR), device, getattr(generator, "resolution", None))
