"""``magec bench --folder``: folder throughput with 1 and 2 Ray workers, and Ray's overhead per image.

A folder of generated faces is inverted on the embedded default (magec method) by 1 and then 2 local
workers, one torch thread each, one image per batch. Throughput counts from the first batch handed out to
the last result (the workers are up and their pipelines loaded before). The overhead per image is the
driver's round trip for a batch minus the time the batch spent inside its worker: scheduling, the task
and result messages, and the driver's bookkeeping.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from magec.distributed import WorkerOptions
from magec.distributed.pool import WorkerPool
from magec.distributed.workers import InversionWorker
from magec.inversion.config import method_config
from magec.inversion.folder import BatchOutcome, FolderJob, Framing, Item


def folder_throughput(
    pipeline: Any, images: int = 8, steps_scale: float = 0.25, workers: tuple[int, ...] = (1, 2)
) -> dict[str, Any]:
    """{"folder_images_per_s": {"1": ..., "2": ...}, "ray_overhead_ms_per_image": ..., ...} for ``pipeline``'s pack."""
    import torch

    from magec.io.images import save_png

    gen = pipeline.generator
    out: dict[str, Any] = {"folder_images": images, "folder_steps_scale": steps_scale}
    with tempfile.TemporaryDirectory(prefix="magec-bench-") as tmp:
        root = Path(tmp)
        pack = pipeline.pack.save(root / "pack")
        with torch.no_grad():
            faces = gen.synthesize(gen.sample_latents(images, seed=2024)).cpu()
        items = [Item(f"f{i}", str(save_png(faces[i], root / "faces" / f"f{i}.png"))) for i in range(images)]
        args = {"pack": str(pack), "device": "cpu", "perceptual": pipeline.perceptual.name}
        rates, overheads = {}, []
        for n in workers:
            job = FolderJob(str(root / f"out{n}"), "magec", method_config("magec", steps_scale), 0, Framing(), {}, {})
            todo = [([item], [item.name]) for item in items]
            sent: dict[int, float] = {}
            trips: list[tuple[float, float]] = []

            def started(task: Any, pid: int, sent: dict[int, float] = sent) -> None:
                sent[id(task)] = time.perf_counter()

            def done(task: Any, outcome: BatchOutcome, sent: dict[int, float] = sent, trips: list = trips) -> None:
                trips.append((time.perf_counter() - sent[id(task)], outcome.worker_seconds))

            with WorkerPool(WorkerOptions(workers=n), InversionWorker, "cpu", args, job, 1) as pool:
                begin = time.perf_counter()
                pool.map(todo, done, lambda task, reason: None, started)
                elapsed = time.perf_counter() - begin
            rates[str(n)] = round(len(trips) / elapsed, 4)
            if n == 1:  # with one worker a batch never waits in a queue: round trip - work = overhead
                overheads = [1000 * (trip - work) for trip, work in trips]
        out["folder_images_per_s"] = rates
        out["folder_seconds_per_image"] = {k: round(1 / v, 3) for k, v in rates.items() if v}
        if overheads:
            out["ray_overhead_ms_per_image"] = round(sorted(overheads)[len(overheads) // 2], 2)
        if "1" in rates and "2" in rates:
            out["folder_speedup_2_workers"] = round(rates["2"] / rates["1"], 3)
    return out
