"""Measuring one chunk of images with one inversion method: the record of each image.

Project the chunk, measure the reconstruction, apply each image's seeded random edits (realism and
improved-target scores) and its edit-consistency edits (re-projection of every edit, then the inverse
edit: ecs). Every inversion is seeded by what it is for and the image, so a record is the same however
the run is split into processes and resumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from magec.evaluation.config import EvaluationConfig
from magec.evaluation.ecs import edit_consistency
from magec.evaluation.edit_plans import EditOp, derived_seed, ecs_edits, random_edits
from magec.evaluation.identity import IdentityMeter
from magec.evaluation.paste_back import PasteMeter
from magec.evaluation.realism import FeatureNetwork, ReferenceManifold, realism_score
from magec.evaluation.reconstruction import reconstruction_metrics
from magec.evaluation.run_folder import RECORD_VERSION, EvaluationPaths, safe_name, write_record
from magec.evaluation.sources import ImageSource
from magec.evaluation.target import attribute_probability, improved_target, signed_target_change
from magec.generators.base import select_noise
from magec.inversion.config import PTI_METHODS, InversionConfig
from magec.io.images import save_png, tensor_to_pil
from magec.latent.editors import LatentEditor
from magec.latent.kinds import ATTRIBUTE
from magec.memory import chunk_size, map_chunks, network_bytes, synthesis_bytes

if TYPE_CHECKING:
    from magec.evaluation.paste_back import PhotoFace
    from magec.inversion.optimizer import InversionResult
    from magec.pipeline import Pipeline

SIGNIFICANT_DIGITS = 6

InvertFn = Callable[..., Any]


@dataclass
class ChunkContext:
    """What measuring a chunk needs, set up once per run (driver) or per worker process."""

    pipeline: Pipeline
    config: EvaluationConfig
    paths: EvaluationPaths
    invert: InvertFn
    features: FeatureNetwork
    manifold: ReferenceManifold
    editors: dict[str, LatentEditor]
    identity: IdentityMeter | None = None
    paste: PasteMeter | None = None


def evaluate_and_record(ctx: ChunkContext, source: ImageSource, chunk: list[int], method: str) -> None:
    """Evaluate one chunk of ``source`` with ``method`` and write each image's record atomically."""
    ids = [source.ids[i] for i in chunk]
    images = source.load(chunk).to(ctx.pipeline.device)
    faces = source.locate(chunk) if ctx.paste is not None else None
    for image_id, record in zip(ids, _evaluate_chunk(ctx, method, images, ids, faces)):
        write_record(ctx.paths, method, image_id, record)


def _num(value: float | torch.Tensor) -> float:
    """Round to SIGNIFICANT_DIGITS so records, CSVs and the report carry the same numbers."""
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        return v
    return float(f"{v:.{SIGNIFICANT_DIGITS}g}")


def default_invert() -> InvertFn:
    from magec.inversion import invert

    return invert


# ---- inversions --------------------------------------------------------------------------------


def _inversion_config(method: str, cfg: EvaluationConfig) -> InversionConfig | None:
    """The method's paper schedule under the run's settings; None (the inverter's own default) at scale 1 with the
    paper's weights."""
    defaults = cfg.lambda_magec is None and cfg.magec_editor == "interfacegan" and not cfg.attributes
    if cfg.steps_scale == 1.0 and defaults:
        return None
    from magec.inversion import method_config

    config = method_config(method, cfg.steps_scale, lambda_magec=cfg.lambda_magec, magec_editor=cfg.magec_editor)
    return replace(config, attributes=tuple(cfg.attributes)) if cfg.attributes else config


def _invert_seeded(
    ctx: ChunkContext, pipe: Pipeline, images: torch.Tensor, method: str, purpose: str, image_id: str, **options: Any
) -> Any:
    """One inversion under the run's settings, seeded by what it is for and the image, so records are reproducible
    however the run is split."""
    with torch.enable_grad():
        return ctx.invert(
            pipe,
            images,
            method=method,
            config=_inversion_config(method, ctx.config),
            seed=derived_seed(purpose, ctx.config.seed, image_id) % (2**31),
            **options,
        )


def _reproject(
    ctx: ChunkContext, pipe: Pipeline, images: torch.Tensor, method: str, image_id: str
) -> tuple[torch.Tensor, str, list[torch.Tensor] | None, float]:
    """ECS re-projection of ``images`` in chunks of the run's ``--batch-size`` (latents, space, noise, seconds).

    Every chunk uses the same seed, and a method with a noise phase starts each image from its rows of the
    noise maps the whole batch would have had (``make_noise(len(images), seed)``), so an edit's re-projection
    is the one a single call would give, up to the float rounding of batched convolutions; its memory is
    that of one projection at ``--batch-size`` (42 edits of a 1024-px image at once would need ~100 GB).
    """
    size = ctx.config.batch_size
    seed = derived_seed("reproject", ctx.config.seed, image_id) % (2**31)
    config = _inversion_config(method, ctx.config)
    phases = (config or _default_method_config(method)).phases
    noise_all = None
    if len(images) > size and pipe.generator.has_noise and any(p.target == "noise" for p in phases):
        noise_all = pipe.generator.make_noise(len(images), seed)
    latents, noise_rows, space, seconds = [], [], "", 0.0
    for start in range(0, len(images), size):
        stop = min(len(images), start + size)
        options: dict[str, Any] = {}
        if noise_all is not None:
            options["initial_noise"] = [n[start:stop] for n in noise_all]
        with torch.enable_grad():
            result = ctx.invert(pipe, images[start:stop], method=method, config=config, seed=seed, **options)
        latents.append(result.latents.detach())
        noise_rows.append(result.noise)
        space, seconds = result.space, seconds + float(result.seconds)
    noise = None
    if noise_rows[0] is not None:
        noise = [torch.cat([rows[i] for rows in noise_rows]) for i in range(len(noise_rows[0]))]
    return torch.cat(latents), space, noise, seconds


def _default_method_config(method: str) -> InversionConfig:
    from magec.inversion import method_config

    return method_config(method)


def _pti_options(method: str, cfg: EvaluationConfig) -> dict[str, Any]:
    """``pti=`` for ``invert`` with a ``+pti`` method: PTI's published settings, steps scaled like the schedule."""
    if method not in PTI_METHODS:
        return {}
    from magec.inversion.pti import PTIConfig

    return {"pti": PTIConfig().scaled(cfg.steps_scale)}


def _tuned(proj: Any, b: int) -> Any:
    """Image ``b``'s tuned generator for the ``+pti`` methods, else None (the pipeline's generator)."""
    tuned = getattr(proj, "tuned", None)
    return tuned[b] if tuned else None


# ---- images and scores -------------------------------------------------------------------------


@torch.no_grad()
def extract_features(features: FeatureNetwork, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Realism features of ``images``, at most ``batch`` at once and fewer when large images need it."""
    size = chunk_size(network_bytes(images.shape[-1]), images.device, cap=batch).size
    return torch.cat(
        map_chunks(
            lambda a, b: features(images[a:b]).cpu(),
            images.shape[0],
            size,
            device=images.device,
            resolution=images.shape[-1],
        )
    )


def _apply(ctx: ChunkContext, latents: torch.Tensor, ops: Sequence[EditOp], invert: bool = False) -> torch.Tensor:
    """Edit copy k of ``latents`` (k-th row, or the one row repeated) with ``ops[k]``; inverse edits with ``invert``."""
    rows = []
    for k, op in enumerate(ops):
        lat = latents[k : k + 1] if latents.shape[0] == len(ops) else latents[:1]
        rows.append(ctx.editors[op.editor].edit(lat, op.operation, -op.amount if invert else op.amount))
    return torch.cat(rows)


def _synth(
    ctx: ChunkContext, latents: torch.Tensor, space: str, noise: list[torch.Tensor] | None, generator: Any = None
) -> torch.Tensor:
    """Images of ``latents``: with ``generator`` (a ``+pti`` image's tuned one) or the pipeline's."""
    return (generator or ctx.pipeline.generator).synthesize(latents, space=space, noise=noise).detach()


def _synth_chunked(
    ctx: ChunkContext, latents: torch.Tensor, space: str, noise: list[torch.Tensor] | None, generator: Any = None
) -> torch.Tensor:
    """:func:`_synth` of many codes (ECS edits), in chunks sized from the memory budget, split on out-of-memory.

    The images (42 edits of a 1024-px image: 0.5 GB) are kept; the activations are bounded by the chunk."""
    gen = generator or ctx.pipeline.generator
    size = chunk_size(synthesis_bytes(gen), ctx.pipeline.device, cap=len(latents)).size

    def part(start: int, stop: int) -> torch.Tensor:
        rows = noise if noise is None else [n[start:stop] if n.shape[0] == len(latents) else n for n in noise]
        return _synth(ctx, latents[start:stop], space, rows, generator)

    return torch.cat(map_chunks(part, len(latents), size, device=ctx.pipeline.device, resolution=gen.resolution))


def _identity_references(ctx: ChunkContext, images: torch.Tensor) -> list[Any] | None:
    """Each input image's dlib chip and descriptor (None when identity is not measured)."""
    if ctx.identity is None:
        return None
    return [ctx.identity.reference(images[b]) for b in range(images.shape[0])]


def _identity_distances(ctx: ChunkContext, refs: list[Any] | None, b: int, images: torch.Tensor) -> list[float | None]:
    """dlib distance input ``b`` -> each of ``images``, rounded like every record number (None: not measured)."""
    if refs is None:
        return [None] * images.shape[0]
    return [_num(d) for d in ctx.identity.distances(refs[b], images)]


def _attribute_scores(ctx: ChunkContext, images: torch.Tensor, attributes: Sequence[str]) -> list[float]:
    """P(attribute) of image k for attributes[k]; NaN when the describer does not know the attribute."""
    layout = ctx.pipeline.describer.layout
    probs = ctx.pipeline.describer(images).detach()
    out = []
    for k, a in enumerate(attributes):
        out.append(
            float(attribute_probability(layout, probs[k : k + 1], a)[0])
            if a in layout.attribute_names
            else float("nan")
        )
    return out


def _lacks_attributes(ctx: ChunkContext, image: torch.Tensor) -> dict[str, bool | None]:
    """For each binary attribute: does the real image lack it (P < 0.5)? Continuous attributes: None."""
    layout = ctx.pipeline.describer.layout
    probs = ctx.pipeline.describer(image).detach()
    out: dict[str, bool | None] = {}
    for a in layout.attributes:
        out[a.name] = bool(float(attribute_probability(layout, probs, a.name)[0]) < 0.5) if a.kind == "binary" else None
    return out


# ---- one chunk, one method ---------------------------------------------------------------------


@torch.no_grad()
def _evaluate_chunk(
    ctx: ChunkContext, method: str, images: torch.Tensor, ids: list[str], faces: list[PhotoFace] | None = None
) -> list[dict[str, Any]]:
    """The records of one chunk; ``faces`` (``--paste-back``): each image's face in its photo."""
    cfg, pipe = ctx.config, ctx.pipeline
    proj = _invert_seeded(ctx, pipe, images, method, "project", ids[0], **_pti_options(method, cfg))
    recon = proj.images.detach()
    rec = reconstruction_metrics(pipe.perceptual, images, recon)
    refs = _identity_references(ctx, images)
    records = [
        {
            "version": RECORD_VERSION,
            "image": image_id,
            "method": method,
            "reconstruction": {
                "mse": _num(rec["mse"][b]),
                "lpips": _num(rec["lpips"][b]),
                "steps": int(proj.steps),
                "id_distance": _identity_distances(ctx, refs, b, recon[b : b + 1])[0],
                "face_found": None if refs is None else int(refs[b].face_found),
            },
            "timing": {"projection_seconds": float(proj.seconds) / len(ids), "ecs_reprojection_seconds": 0.0},
            "edits": [],
            "ecs": [],
        }
        for b, image_id in enumerate(ids)
    ]
    for b, image_id in enumerate(ids):
        records[b]["edits"], edited, ops = _random_edit_rows(ctx, proj, recon, refs, b, image_id)
        if faces is not None:
            records[b]["paste"] = _pasted(ctx, faces[b], recon[b], edited, ops)
    if cfg.ecs:
        _edit_consistency(ctx, method, images, ids, proj, recon, records, refs)
    if cfg.save_images:
        for b, image_id in enumerate(ids):
            real_png = ctx.paths.image_dir(image_id) / "real.png"
            if not real_png.exists():
                save_png(images[b].cpu(), real_png)
            save_png(recon[b].cpu(), ctx.paths.image_dir(image_id, method) / "projection.png")
    return records


def _random_edit_rows(
    ctx: ChunkContext, proj: Any, recon: torch.Tensor, refs: list[Any] | None, b: int, image_id: str
) -> tuple[list[dict[str, Any]], torch.Tensor, list[EditOp]]:
    """Image ``b``'s seeded random edits: realism (every editor) and improved target (attribute editors); with
    the edited images and the edits."""
    ops = random_edits(ctx.editors, image_id, ctx.config.seed, ctx.config.plan)
    if not ops:
        return [], recon[:0], []
    lat = proj.latents[b : b + 1].detach()
    edited = _synth_chunked(
        ctx, _apply(ctx, lat, ops), proj.space, select_noise(proj.noise, b, len(ops)), _tuned(proj, b)
    )
    realism = realism_score(ctx.manifold, extract_features(ctx.features, edited))
    identity = _identity_distances(ctx, refs, b, edited)
    attr_ops = [k for k, op in enumerate(ops) if ctx.editors[op.editor].traits.family == ATTRIBUTE]
    before = after = {}
    if attr_ops:
        names = [ops[k].operation for k in attr_ops]
        before = dict(zip(attr_ops, _attribute_scores(ctx, recon[b : b + 1].expand(len(names), -1, -1, -1), names)))
        after = dict(zip(attr_ops, _attribute_scores(ctx, edited[attr_ops], names)))
    rows = []
    for k, op in enumerate(ops):
        row = {
            "editor": op.editor,
            "index": op.index,
            "operation": op.operation,
            "amount": op.amount,
            "realism": _num(realism[k]),
            "id_distance": identity[k],
        }
        if k in before:
            bt, at = torch.tensor(before[k]), torch.tensor(after[k])
            row |= {
                "target_before": _num(bt),
                "target_after": _num(at),
                "target_change": _num(signed_target_change(bt, at, op.direction)),
                "t": _num(improved_target(bt, at, op.direction)),
            }
        rows.append(row)
    return rows, edited, ops


def _pasted(
    ctx: ChunkContext, face: PhotoFace, recon: torch.Tensor, edited: torch.Tensor, ops: Sequence[EditOp]
) -> list[dict[str, Any]]:
    """``--paste-back`` rows of one face: its projection and each edit pasted into its photo, in every mode."""
    assert ctx.paste is not None
    rows = ctx.paste.measure(face, tensor_to_pil(recon.cpu()), [tensor_to_pil(e.cpu()) for e in edited])
    for row in rows:
        if row["edit"] >= 0:
            op = ops[row["edit"]]
            row |= {"editor": op.editor, "operation": op.operation, "amount": op.amount}
    return rows


def _edit_consistency(
    ctx: ChunkContext,
    method: str,
    images: torch.Tensor,
    ids: list[str],
    proj: InversionResult,
    recon: torch.Tensor,
    records: list[dict],
    refs: list[Any] | None = None,
) -> None:
    """Eq. 4 for every ECS edit of the chunk; the edited images are re-projected in chunks of ``--batch-size``.

    ``+pti`` methods: each image's edits come from its tuned generator, and are re-projected into that same
    generator (the base method's latent optimisation, no second tuning; one call per image), whose inverse
    edit gives x_cyc (:func:`_tuned_cycles`).
    """
    cfg, pipe = ctx.config, ctx.pipeline
    plans, edited, owners = [], [], []
    lacks = [_lacks_attributes(ctx, images[b : b + 1]) for b in range(len(ids))]
    for b, image_id in enumerate(ids):
        ops = ecs_edits(ctx.editors, image_id, cfg.seed, lacks[b], cfg.plan)
        if not ops:
            continue
        lat = proj.latents[b : b + 1].detach()
        noise = select_noise(proj.noise, b, len(ops))
        edited.append(_synth_chunked(ctx, _apply(ctx, lat, ops), proj.space, noise, _tuned(proj, b)))
        plans.extend(ops)
        owners.extend([b] * len(ops))
    if not plans:
        return
    x_edit = torch.cat(edited)
    if getattr(proj, "tuned", None):
        x_cyc, reprojection_seconds = _tuned_cycles(ctx, method, ids, proj.tuned, x_edit, plans, owners)
    else:
        latents, space, noise, reprojection_seconds = _reproject(ctx, pipe, x_edit, method, ids[0])
        x_cyc = _synth_chunked(ctx, _apply(ctx, latents, plans, invert=True), space, noise)
    identity = [d for b in sorted(set(owners)) for d in _identity_distances(ctx, refs, b, x_edit[_rows(owners, b)])]
    base = recon[owners]
    scores = edit_consistency(pipe.perceptual, base, x_edit, x_cyc)
    for k, (op, b) in enumerate(zip(plans, owners)):
        lack = lacks[b].get(op.operation) if ctx.editors[op.editor].traits.family == ATTRIBUTE else None
        records[b]["ecs"].append(
            {
                "editor": op.editor,
                "index": op.index,
                "operation": op.operation,
                "amount": op.amount,
                "lacks_target": "" if lack is None else int(lack),
                "d_proj_edit": _num(scores["d_proj_edit"][k]),
                "d_edit_cyc": _num(scores["d_edit_cyc"][k]),
                "d_proj_cyc": _num(scores["d_proj_cyc"][k]),
                "ecs": _num(scores["ecs"][k]),
                "id_distance": identity[k],
            }
        )
        if cfg.save_images:
            d = ctx.paths.image_dir(ids[b], method)
            save_png(x_edit[k].cpu(), d / f"ecs-{safe_name(op.editor)}-{op.index}-edit.png")
            save_png(x_cyc[k].cpu(), d / f"ecs-{safe_name(op.editor)}-{op.index}-cyc.png")
    per_image = reprojection_seconds / len(plans)
    for b in owners:
        records[b]["timing"]["ecs_reprojection_seconds"] += per_image


def _rows(owners: list[int], b: int) -> list[int]:
    """Positions of image ``b``'s edits among the chunk's ECS edits (owners are grouped, in image order)."""
    return [k for k, o in enumerate(owners) if o == b]


def _tuned_cycles(
    ctx: ChunkContext,
    method: str,
    ids: list[str],
    tuned: list[Any],
    x_edit: torch.Tensor,
    plans: list[EditOp],
    owners: list[int],
) -> tuple[torch.Tensor, float]:
    """ECS cycles of a ``+pti`` method: x_edit re-inverted into its image's tuned generator, then edited back.

    The re-inversion is the base method's latent optimisation (``magec+pti`` -> ``magec``) with the tuned
    generator in place of the pipeline's; the generator is not tuned again (that would fit any x_edit and make
    the cycle trivially exact, and would cost a second tuning per edit).
    """
    from magec.inversion.config import base_method

    base = base_method(method)
    cycles, seconds = [None] * len(plans), 0.0
    for b in sorted(set(owners)):
        rows = _rows(owners, b)
        pipe = ctx.pipeline.with_generator(tuned[b])  # the same parts, with this image's tuned generator
        latents, space, noise, took = _reproject(ctx, pipe, x_edit[rows], base, ids[b])
        back = _apply(ctx, latents, [plans[k] for k in rows], invert=True)
        for k, image in zip(rows, _synth_chunked(ctx, back, space, noise, tuned[b])):
            cycles[k] = image
        seconds += took
    return torch.stack(cycles), seconds
