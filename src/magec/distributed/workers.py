"""The actors: each loads the pipeline once, fixes its torch threads, then runs batches.

They are plain classes (``ray.remote`` is applied by the pool), so they are importable and testable
without Ray. Every task catches its own errors per image and returns them as data.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magec.inversion.folder import BatchOutcome, FolderJob, Item, invert_batch, one_line

if TYPE_CHECKING:
    from magec.evaluation.config import EvaluationConfig
    from magec.evaluation.sources import SourceSpec


def _load(pipeline_args: dict[str, Any], threads: int, gpu_share: float | None = None) -> Any:
    import torch

    torch.set_num_threads(threads)  # the same in every worker, whatever the split: reproducible numbers
    from magec.memory import limit_process_share
    from magec.pipeline import load_pipeline

    pipeline = load_pipeline(**pipeline_args)
    # --gpus-per-worker 0.5: this worker may use half of the GPU, and its chunks are sized from that half
    if gpu_share is not None:
        limit_process_share(pipeline.device, gpu_share)
    # The generator's starting code is computed on first use and cached (the DCGAN's medoid of 1024 samples:
    # ~5 CPU-s, a StyleGAN2 without a stored w_avg maps its samples). Here it is part of loading, done while
    # the other workers load too, rather than inside each worker's first batch.
    pipeline.generator.initial_latent()
    return pipeline


class InversionWorker:
    """``magec invert`` batches: reads its images, inverts, writes each image's files atomically."""

    def __init__(
        self, pipeline_args: dict[str, Any], job: FolderJob, threads: int, gpu_share: float | None = None
    ) -> None:
        from magec.inversion.starts import attach_encoder

        self.pipeline = attach_encoder(_load(pipeline_args, threads, gpu_share), job.init)  # --init ENC: once
        self.job = job

    def ready(self) -> int:
        return os.getpid()

    def run(self, batch: list[Item], write: list[str]) -> BatchOutcome:
        started = time.perf_counter()
        outcome = invert_batch(self.pipeline, self.job, batch, write)
        outcome.worker_seconds = time.perf_counter() - started
        return outcome


class EvaluationWorker:
    """``magec evaluate`` chunks: one (chunk, method) per task, records and images written by the worker."""

    def __init__(
        self,
        pipeline_args: dict[str, Any],
        out_dir: str,
        config: EvaluationConfig,
        source: SourceSpec,
        ids: list[str],
        threads: int,
        gpu_share: float | None = None,
    ) -> None:
        from magec.errors import MagecError
        from magec.evaluation.runner import worker_context

        self.pipeline = _load(pipeline_args, threads, gpu_share)
        self.source = source.build(self.pipeline.generator, config.seed)
        if self.source.ids != ids:  # the chunks name images by position: both sides must list the same ones
            raise MagecError(
                f"this worker finds other images than the driver ({len(self.source.ids)} against {len(ids)}); "
                "did the input folder change?"
            )
        self.ctx = worker_context(self.pipeline, Path(out_dir), config)

    def ready(self) -> int:
        return os.getpid()

    def run(self, chunk: list[int], method: str) -> dict[str, str]:
        """Evaluate one chunk with one method; returns {image id: reason} for what failed (empty: all done)."""
        from magec.evaluation.chunk import evaluate_and_record

        try:
            evaluate_and_record(self.ctx, self.source, chunk, method)
        except Exception as exc:  # reported per image by the driver
            return {self.source.ids[i]: one_line(exc) for i in chunk}
        return {}
