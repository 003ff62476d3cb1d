"""The two distributed runs: inversion batches (``magec invert``) and evaluation chunks (``magec evaluate``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magec.distributed import WorkerOptions
from magec.distributed.pool import WorkerPool
from magec.distributed.workers import EvaluationWorker, InversionWorker
from magec.inversion.folder import BatchOutcome, FolderJob, Item

if TYPE_CHECKING:
    from magec.evaluation.config import EvaluationConfig
    from magec.evaluation.sources import SourceSpec

Batch = tuple[list[Item], list[str]]


def invert_on_workers(
    options: WorkerOptions,
    pipeline_args: dict[str, Any],
    job: FolderJob,
    todo: list[Batch],
    report: Callable[[Batch, BatchOutcome], None],
    on_start: Callable[[WorkerPool], None] | None = None,
) -> None:
    """Invert every (batch, names to write) of ``todo`` on the workers; ``report`` sees each batch's outcome
    once (a batch that could not be run at all comes back with every name failed)."""
    device = str(pipeline_args.get("device", "auto"))
    with WorkerPool(
        options, InversionWorker, device, pipeline_args, job, options.threads_per_worker, options.gpus_per_worker
    ) as pool:
        if on_start is not None:
            on_start(pool)
        pool.map(
            todo,
            done=report,
            lost=lambda task, reason: report(task, BatchOutcome(failed={name: reason for name in task[1]})),
        )


def evaluation_executor(
    options: WorkerOptions,
    pipeline_args: dict[str, Any],
    out_dir: str | Path,
    config: EvaluationConfig,
    source: SourceSpec,
    ids: list[str],
    failures: dict[str, str],
) -> Callable[[list[tuple[list[int], str]], Any], None]:
    """An ``executor`` for ``run_evaluation``: chunks go to workers, each of which builds ``source`` itself (and
    checks it finds the driver's ``ids``); failed images land in ``failures`` (``"image id [method]" -> reason``)."""

    def execute(todo: list[tuple[list[int], str]], bar: Any) -> None:
        device = str(pipeline_args.get("device", "auto"))
        init = (pipeline_args, str(out_dir), config, source, ids, options.threads_per_worker, options.gpus_per_worker)
        with WorkerPool(options, EvaluationWorker, device, *init) as pool:

            def done(task: tuple[list[int], str], failed: dict[str, str]) -> None:
                for image_id, reason in failed.items():
                    failures[f"{image_id} [{task[1]}]"] = reason
                bar.update(1)

            def lost(task: tuple[list[int], str], reason: str) -> None:
                done(task, {ids[i]: reason for i in task[0]})

            pool.map(todo, done, lost)

    return execute
