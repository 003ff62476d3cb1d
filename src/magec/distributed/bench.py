"""``magec bench --folder``: folder throughput with 1 and 2 Ray workers, and Ray's overhead per image.

A folder of generated faces is inverted on the embedded default (magec method) by 1 and then 2 local
workers, one torch thread each, one image per batch (8 images: 4 per worker with 2). Throughput counts from
the first batch handed out to the last result; the workers are up before, which includes loading the pipeline
and the generator's starting code, computed once per process (``folder_workers_up_s`` is that time; a real
run pays it once per worker too). The overhead per image is the driver's round trip for a batch minus the
time the batch spent inside its worker: scheduling, the task and result messages, and the driver's
bookkeeping. ``folder_ray_own_cpu_share`` is the CPU time of the driver and of every Ray process other than
the working actors (raylet, GCS, dashboard, log monitor, agents) during the timed window, as a share of one
core; ``folder_worker_busy_share`` the share of the window the actors spent inside their batches, and
``folder_worker_cpu_s_per_image`` the actors' CPU seconds per image: other jobs on a shared machine change it
far less than wall time, so its rise from 1 to 2 workers is mostly what two workers cost each other.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from magec.distributed import WorkerOptions
from magec.distributed.pool import WorkerPool
from magec.distributed.workers import InversionWorker
from magec.inversion.config import method_config
from magec.inversion.folder import BatchOutcome, FolderJob, FramingOptions, Item


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
        rates, overheads, ups, own_cpu, busy, worker_cpu = {}, [], {}, {}, {}, {}
        for n in workers:
            job = FolderJob(
                str(root / f"out{n}"), "magec", method_config("magec", steps_scale), 0, FramingOptions(), {}, {}
            )
            todo = [([item], [item.name]) for item in items]
            sent: dict[int, float] = {}
            trips: list[tuple[float, float]] = []

            def started(task: Any, pid: int, sent: dict[int, float] = sent) -> None:
                sent[id(task)] = time.perf_counter()

            def done(task: Any, outcome: BatchOutcome, sent: dict[int, float] = sent, trips: list = trips) -> None:
                trips.append((time.perf_counter() - sent[id(task)], outcome.worker_seconds))

            up = time.perf_counter()
            with WorkerPool(WorkerOptions(workers=n), InversionWorker, "cpu", args, job, 1) as pool:
                begin = time.perf_counter()
                before = process_tree_cpu(os.getpid())
                pool.map(todo, done, lambda task, reason: None, started)
                elapsed = time.perf_counter() - begin
                after = process_tree_cpu(os.getpid())
            ups[str(n)] = round(begin - up, 2)
            if before and after:  # Linux: the driver and Ray's own processes, not the working actors
                own = sum(t - before.get(pid, 0.0) for pid, t in after.items() if pid not in pool.pids)
                own_cpu[str(n)] = round(own / elapsed, 4)
                work = sum(t - before.get(pid, 0.0) for pid, t in after.items() if pid in pool.pids)
                worker_cpu[str(n)] = round(work / max(len(trips), 1), 3)
            busy[str(n)] = round(sum(work for _, work in trips) / (n * elapsed), 4)
            rates[str(n)] = round(len(trips) / elapsed, 4)
            if n == 1:  # with one worker a batch never waits in a queue: round trip - work = overhead
                overheads = [1000 * (trip - work) for trip, work in trips]
        out["folder_images_per_s"] = rates
        out["folder_seconds_per_image"] = {k: round(1 / v, 3) for k, v in rates.items() if v}
        out["folder_workers_up_s"] = ups
        out["folder_worker_busy_share"] = busy
        if own_cpu:
            out["folder_ray_own_cpu_share"] = own_cpu
            out["folder_worker_cpu_s_per_image"] = worker_cpu
        if overheads:
            out["ray_overhead_ms_per_image"] = round(sorted(overheads)[len(overheads) // 2], 2)
        if "1" in rates and "2" in rates:
            out["folder_speedup_2_workers"] = round(rates["2"] / rates["1"], 3)
    return out


def process_tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds (user + system) of ``root`` and every process below it, by pid; empty without ``/proc``.

    A local Ray instance's processes (raylet, GCS, dashboard, log monitor, agents, actors) are all
    descendants of the driver that started it.
    """
    proc = Path("/proc")
    if not (proc / str(root) / "stat").is_file():
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        # after the command: state, ppid, ..., utime (14th field of the line), stime (15th)
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return {pid: cpu[pid] for pid in tree if pid in cpu}
