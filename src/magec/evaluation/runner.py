"""The resumable evaluation run behind ``magec evaluate``: setting it up and dealing out its chunks.

For each chunk of input images and each inversion method, ``magec.evaluation.chunk`` measures the images
and writes each finished (image, method) record atomically under ``OUT/records``
(``magec.evaluation.run_folder``); a killed run restarted with the same arguments skips finished records
and recomputes the rest with the same seeds. The CSVs are rebuilt from the records, so an
interrupted-then-resumed run writes byte-identical ``reconstruction.csv``, ``edits.csv`` and ``ecs.csv``
to an uninterrupted one. Wall-clock times, which can never repeat exactly, live apart in ``timing.csv``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from magec.errors import MagecError, file_error
from magec.evaluation.chunk import ChunkContext, InvertFn, default_invert, evaluate_and_record, extract_features
from magec.evaluation.config import EvaluationConfig, with_default_editors
from magec.evaluation.identity import IdentityMeter
from magec.evaluation.paste_back import PasteMeter
from magec.evaluation.realism import FeatureNetwork, ReferenceManifold, build_manifold, realism_features
from magec.evaluation.run_folder import EvaluationPaths, check_or_write_metadata, record_done, write_csvs
from magec.evaluation.sources import REFERENCE_SEED_OFFSET, ImageSource, generated_source
from magec.inversion.config import needs_encoder
from magec.io import atomic
from magec.latent.editors import LatentEditor

if TYPE_CHECKING:
    from magec.pipeline import Pipeline

#: ``executor(todo, bar)``: runs the unfinished (chunk indices, method) pairs elsewhere, updating ``bar``.
Executor = Callable[[list[tuple[list[int], str]], Any], None]


def run_evaluation(
    pipeline: Pipeline,
    source: ImageSource,
    out_dir: str | Path,
    config: EvaluationConfig | None = None,
    reference: ImageSource | None = None,
    invert_fn: InvertFn | None = None,
    features: FeatureNetwork | None = None,
    progress: bool = True,
    extra_metadata: dict[str, Any] | None = None,
    executor: Executor | None = None,
    identity: IdentityMeter | None = None,
) -> EvaluationPaths:
    """Evaluate ``config.methods`` on ``source`` into ``out_dir``, resuming whatever is already done there.

    ``pipeline`` is a ``magec.pipeline.Pipeline`` (generator, describer, editors, perceptual,
    device). ``reference`` holds real images for the realism score; without it, ``config.reference_size``
    generator samples are used, and the run metadata says so. ``executor(todo, bar)``, when given, runs the
    unfinished (chunk indices, method) pairs elsewhere (each through :func:`evaluate_and_record`).
    ``identity`` measures dlib identity distances when ``config.identity`` (default: dlib's network, loaded here).
    ``config`` None: the paper's settings (``EvaluationConfig()``).
    """
    config = config or EvaluationConfig()
    if config.paste_back and not source.has_photos:
        raise MagecError("--paste-back needs faces cut from photos (--images with --face-crop or --align)")
    paths = EvaluationPaths(Path(out_dir))
    config = with_default_editors(config, pipeline)
    editors = _select_editors(pipeline, config.editors)
    encoder = _check_encoder(pipeline, config)
    features = features or realism_features(pipeline.describer, pipeline.device, seed=config.seed)
    if reference is None:
        reference = generated_source(
            pipeline.generator, config.reference_size, config.seed, REFERENCE_SEED_OFFSET, "generator samples"
        )
        reference_kind = "generator samples (no real reference images given)"
    else:
        reference_kind = "real images"
    metadata = {
        "config": config.to_dict(),
        "inputs": source.description,
        "image_ids": list(source.ids),
        "reference": f"{reference.description}: {reference_kind}",
        "feature_network": features.name,
        "perceptual": getattr(pipeline.perceptual, "name", type(pipeline.perceptual).__name__),
        "generator": getattr(pipeline.generator, "spec", type(pipeline.generator).__name__),
        "describer": getattr(pipeline.describer, "spec", type(pipeline.describer).__name__),
        # only when on, so that runs made before --identity auto (identity off) still resume with --identity none
        **({"identity_loss": pipeline.identity.name} if pipeline.identity is not None else {}),
        # the encoder the encoder+... methods start from (only with those methods: other runs keep their metadata)
        **({"encoder": encoder} if encoder else {}),
        **(extra_metadata or {}),
    }
    check_or_write_metadata(paths, metadata)
    manifold = _reference_manifold(paths, reference, features, config, pipeline.device, progress)
    meter = _identity_meter(config, pipeline.device, identity)
    paste = PasteMeter() if config.paste_back else None
    invert = invert_fn or default_invert()
    ctx = ChunkContext(pipeline, config, paths, invert, features, manifold, editors, meter, paste)
    _run_chunks(ctx, source, executor, progress)
    write_csvs(paths, source.ids, config.methods)
    return paths


def _run_chunks(ctx: ChunkContext, source: ImageSource, executor: Executor | None, progress: bool) -> None:
    """Evaluate every (chunk, method) not recorded yet: here, one after the other, or through ``executor``."""
    config, paths = ctx.config, ctx.paths
    chunks = [list(range(i, min(i + config.batch_size, len(source)))) for i in range(0, len(source), config.batch_size)]
    todo = [(c, m) for c in chunks for m in config.methods if not all(record_done(paths, m, source.ids[i]) for i in c)]
    done_images = len(chunks) * len(config.methods) - len(todo)
    bar = tqdm(
        total=len(chunks) * len(config.methods),
        initial=done_images,
        desc="evaluate",
        unit="chunk",
        disable=not progress,
    )
    try:
        if executor is not None:  # e.g. Ray workers (magec.distributed): they write the records
            executor(todo, bar)
        else:
            for chunk, method in todo:
                bar.set_postfix_str(f"{method} {source.ids[chunk[0]]}")
                evaluate_and_record(ctx, source, chunk, method)
                bar.update(1)
    finally:
        bar.close()


def worker_context(
    pipeline: Pipeline, out_dir: str | Path, config: EvaluationConfig, features: FeatureNetwork | None = None
) -> ChunkContext:
    """The context of a run that a driver has set up (run.json, reference features), for another process."""
    paths = EvaluationPaths(Path(out_dir))
    cache = paths.reference_features
    if not paths.run_json.is_file() or not cache.is_file():
        raise file_error(paths.root, "is not a prepared evaluation run (no run.json or reference features)")
    features = features or realism_features(pipeline.describer, pipeline.device, seed=config.seed)
    manifold = build_manifold(torch.load(cache, map_location="cpu", weights_only=True), config.realism)
    config = with_default_editors(config, pipeline)
    editors = _select_editors(pipeline, config.editors)
    _check_encoder(pipeline, config)
    meter = _identity_meter(config, pipeline.device)
    paste = PasteMeter() if config.paste_back else None
    return ChunkContext(pipeline, config, paths, default_invert(), features, manifold, editors, meter, paste)


def _check_encoder(pipeline: Pipeline, config: EvaluationConfig) -> str:
    """Refuse, before any work, encoder methods without ``pipeline.encoder`` (one line); its spec, or ""."""
    methods = [m for m in config.methods if needs_encoder(m)]
    if not methods:
        return ""
    from magec.inversion.optimizer import require_encoder

    return require_encoder(pipeline, methods[0]).spec or type(pipeline.encoder).__name__


def _identity_meter(
    config: EvaluationConfig, device: torch.device, given: IdentityMeter | None = None
) -> IdentityMeter | None:
    if not config.identity:
        return None
    return given or IdentityMeter.load(device)


def _select_editors(pipeline: Pipeline, names: Sequence[str]) -> dict[str, LatentEditor]:
    available = dict(pipeline.editors)
    missing = [n for n in names if n not in available]
    if missing:
        raise MagecError(
            f"--editors: the pack has no {', '.join(missing)} editor (it has: {', '.join(sorted(available)) or 'none'})"
        )
    return {n: available[n] for n in names}


def _reference_manifold(
    paths: EvaluationPaths,
    reference: ImageSource,
    features: FeatureNetwork,
    config: EvaluationConfig,
    device: torch.device,
    progress: bool,
) -> ReferenceManifold:
    """Reference features, computed once per run folder and reloaded on resume."""
    cache = paths.reference_features
    if cache.is_file():
        feats = torch.load(cache, map_location="cpu", weights_only=True)
    else:
        parts = []
        step = 64
        for i in tqdm(range(0, len(reference), step), desc="reference features", disable=not progress):
            idx = list(range(i, min(i + step, len(reference))))
            parts.append(extract_features(features, reference.load(idx).to(device)))
        feats = torch.cat(parts)
        with atomic.atomic_path(cache) as tmp:
            torch.save(feats, tmp)
    return build_manifold(feats, config.realism)
