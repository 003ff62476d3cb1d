"""The resumable evaluation run behind ``magec evaluate``.

For each chunk of input images and each inversion method: project the images, measure the
reconstruction, apply the image's seeded random edits (realism and improved-target scores) and its
edit-consistency edits (re-projection of every edit, then the inverse edit: ecs). Each finished
(image, method) record is written atomically as JSON under ``OUT/records``; a killed run restarted
with the same arguments skips finished records and recomputes the rest with the same seeds. The CSVs
are rebuilt from the records, so an interrupted-then-resumed run writes byte-identical
``reconstruction.csv``, ``edits.csv`` and ``ecs.csv`` to an uninterrupted one. Wall-clock times, which
can never repeat exactly, live apart in ``timing.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from magec import validation
from magec.errors import MagecError, file_error
from magec.evaluation.ecs import edit_consistency
from magec.evaluation.edit_plans import (
    EditOp,
    EditPlanConfig,
    derived_seed,
    ecs_edits,
    random_edits,
)
from magec.evaluation.identity import IdentityMeter
from magec.evaluation.paste_back import PasteMeter
from magec.evaluation.realism import (
    FeatureNetwork,
    RealismConfig,
    ReferenceManifold,
    build_manifold,
    realism_features,
    realism_score,
)
from magec.evaluation.reconstruction import reconstruction_metrics
from magec.evaluation.sources import REFERENCE_SEED_OFFSET, ImageSource, generated_source
from magec.evaluation.target import attribute_probability, improved_target, signed_target_change
from magec.generators.base import select_noise
from magec.inversion.config import MAGEC_EDITORS, METHODS, PTI_METHODS, InversionConfig, needs_encoder
from magec.io import atomic
from magec.io.images import save_png, tensor_to_pil
from magec.latent.editors import LatentEditor
from magec.latent.kinds import ATTRIBUTE, editor_kinds
from magec.memory import chunk_size, map_chunks, network_bytes, synthesis_bytes

if TYPE_CHECKING:
    from magec.evaluation.paste_back import PhotoFace
    from magec.inversion.optimizer import InversionResult
    from magec.pipeline import Pipeline

#: 2: ECS edits re-projected in chunks of --batch-size (before: all of an image's edits in one batch).
RECORD_VERSION = 2
SIGNIFICANT_DIGITS = 6

#: dlib identity distance columns (``magec.evaluation.identity``), appended after the paper's columns.
IDENTITY_COLUMNS = ("id_distance",)
RECONSTRUCTION_COLUMNS = ("image", "method", "mse", "lpips", "steps", *IDENTITY_COLUMNS, "face_found")
EDIT_COLUMNS = (
    "image",
    "method",
    "editor",
    "index",
    "operation",
    "amount",
    "realism",
    "target_before",
    "target_after",
    "target_change",
    "t",
    *IDENTITY_COLUMNS,
)
ECS_COLUMNS = (
    "image",
    "method",
    "editor",
    "index",
    "operation",
    "amount",
    "lacks_target",
    "d_proj_edit",
    "d_edit_cyc",
    "d_proj_cyc",
    "ecs",
    *IDENTITY_COLUMNS,
)
TIMING_COLUMNS = ("image", "method", "projection_seconds", "ecs_reprojection_seconds")
#: ``--paste-back`` (``magec.evaluation.paste_back``): edit -1 is the projection pasted back (amount 0).
PASTE_COLUMNS = (
    "image",
    "method",
    "mode",
    "edit",
    "editor",
    "operation",
    "amount",
    "sharpness",
    "mse_face",
    "mse_outside",
    "id_distance",
)


@dataclass(frozen=True)
class EvaluationConfig:
    """What one evaluation measures. Defaults follow the paper: the three methods of Tables 1-3,
    about 20 random edits per image, realism with k = 3, ECS on InterfaceGAN and GANSpace."""

    methods: tuple[str, ...] = ("magec", "no-magec", "im2stylegan++")
    #: None: the paper's three editors plus SeFa and StyleFlow when the pack has them (``default_editors``).
    editors: tuple[str, ...] | None = None
    plan: EditPlanConfig = EditPlanConfig()
    realism: RealismConfig = RealismConfig()
    ecs: bool = True
    #: Generator samples forming the realism reference set when no real reference images are given.
    reference_size: int = 1000
    #: Images inverted together in one call (a resumed run keeps the same chunks, so results repeat).
    batch_size: int = 1
    seed: int = 0
    #: Keep PNGs of projections and ECS edits (needed for the report's best/worst ECS examples).
    save_images: bool = True
    #: Scale of every inversion phase's step count (1 = the paper's schedules; smaller for quick looks).
    steps_scale: float = 1.0
    #: Replace lambda_MAGEC (paper: 3e-4) in the magec method, for sensitivity studies; None keeps the paper's.
    lambda_magec: float | None = None
    #: Restrict the MAGEC loss to these attributes of the pack; None = all of them.
    attributes: tuple[str, ...] | None = None
    #: Editor whose edits the magec method's MAGEC term uses (the paper: interfacegan; or styleflow).
    magec_editor: str = "interfacegan"
    #: Record dlib's identity distance input -> projection and input -> every edit (``magec.evaluation.identity``).
    identity: bool = True
    #: Faces cut from photos: paste the projection and every random edit back into the photo, in each paste mode,
    #: and measure sharpness, closeness to the photo and identity there (``magec.evaluation.paste_back``).
    paste_back: bool = False

    def __post_init__(self) -> None:
        if not self.methods:
            raise MagecError("evaluation needs at least one method")
        for method in self.methods:
            validation.choice("--methods", method, METHODS)
        validation.integer("--edits-per-editor", self.plan.edits_per_editor, 0)
        validation.integer("--reference-size", self.reference_size, 1)
        validation.integer("--batch-size", self.batch_size, 1)
        validation.integer("--seed", self.seed, 0)
        validation.positive("--steps-scale", self.steps_scale)
        if self.lambda_magec is not None:
            validation.non_negative("--lambda-magec", self.lambda_magec)
        validation.choice("--magec-editor", self.magec_editor, MAGEC_EDITORS)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["lambda_magec"] is None:  # runs made before this option existed stay resumable
            del d["lambda_magec"]
        if d["attributes"] is None:
            del d["attributes"]
        else:
            d["attributes"] = list(self.attributes)
        if d["magec_editor"] == "interfacegan":  # likewise
            del d["magec_editor"]
        if not d["identity"]:  # runs made before the identity columns existed stay resumable (with --no-identity)
            del d["identity"]
        if not d["paste_back"]:  # likewise for runs made before --paste-back
            del d["paste_back"]
        d["methods"] = list(self.methods)
        d["editors"] = list(self.editors) if self.editors is not None else None
        d["plan"]["interpolation_t"] = list(self.plan.interpolation_t)
        return d


@dataclass
class EvaluationPaths:
    """Files one run writes under its output folder."""

    root: Path
    reconstruction_csv: Path = field(init=False)
    edits_csv: Path = field(init=False)
    ecs_csv: Path = field(init=False)
    timing_csv: Path = field(init=False)
    paste_csv: Path = field(init=False)
    run_json: Path = field(init=False)
    records: Path = field(init=False)
    images: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.reconstruction_csv = self.root / "reconstruction.csv"
        self.edits_csv = self.root / "edits.csv"
        self.ecs_csv = self.root / "ecs.csv"
        self.timing_csv = self.root / "timing.csv"
        self.paste_csv = self.root / "paste.csv"
        self.run_json = self.root / "run.json"
        self.records = self.root / "records"
        self.images = self.root / "images"

    def record(self, method: str, image_id: str) -> Path:
        return self.records / safe_name(method) / f"{image_id}.json"

    def image_dir(self, image_id: str, method: str | None = None) -> Path:
        d = self.images / image_id
        return d / safe_name(method) if method else d


def check_run_folder(out_dir: str | Path, force: bool = False) -> Path:
    """Check, before any heavy work, that ``out_dir`` is new, empty, or an evaluation run (resumed).

    A folder holding other files is refused; ``force`` adds the run beside them, but still refuses
    when one of the run's own file names is taken by a file magec did not write.
    """
    root = Path(out_dir)
    paths = EvaluationPaths(root)
    if root.exists() and not root.is_dir():
        raise file_error(root, "is a file; --out must be a folder for the evaluation run")
    if not root.is_dir() or not any(root.iterdir()) or paths.run_json.is_file():
        return root
    if not force:
        raise file_error(
            root,
            "folder exists and is not a magec evaluation run; choose a new or empty folder, "
            "or --force to add the run beside its files (magec never replaces files it did not write)",
        )
    for taken in (
        paths.run_json,
        paths.reconstruction_csv,
        paths.edits_csv,
        paths.ecs_csv,
        paths.timing_csv,
        paths.paste_csv,
        paths.records,
        paths.images,
    ):
        if taken.exists():
            raise file_error(taken, "exists and was not written by magec; choose another --out")
    return root


def safe_name(name: str) -> str:
    """A method or editor name as a file-name part (``im2stylegan++`` -> ``im2stylegan__``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _num(value: float | torch.Tensor) -> float:
    """Round to SIGNIFICANT_DIGITS so records, CSVs and the report carry the same numbers."""
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        return v
    return float(f"{v:.{SIGNIFICANT_DIGITS}g}")


InvertFn = Callable[..., Any]


def _default_invert() -> InvertFn:
    from magec.inversion import invert

    return invert


def _inversion_config(method: str, cfg: EvaluationConfig) -> InversionConfig | None:
    """The method's paper schedule under the run's settings; None (the inverter's own default) at scale 1 with the
    paper's weights."""
    defaults = cfg.lambda_magec is None and cfg.magec_editor == "interfacegan" and not cfg.attributes
    if cfg.steps_scale == 1.0 and defaults:
        return None
    from dataclasses import replace

    from magec.inversion import method_config

    config = method_config(method, cfg.steps_scale, lambda_magec=cfg.lambda_magec, magec_editor=cfg.magec_editor)
    return replace(config, attributes=tuple(cfg.attributes)) if cfg.attributes else config


def _invert_seeded(
    ctx: _Context, pipe: Pipeline, images: torch.Tensor, method: str, purpose: str, image_id: str, **options: Any
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
    ctx: _Context, pipe: Pipeline, images: torch.Tensor, method: str, image_id: str
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


@dataclass
class _Context:
    pipeline: Pipeline
    config: EvaluationConfig
    paths: EvaluationPaths
    invert: InvertFn
    features: FeatureNetwork
    manifold: ReferenceManifold
    editors: dict[str, LatentEditor]
    identity: IdentityMeter | None = None
    paste: PasteMeter | None = None


# ---- the run -----------------------------------------------------------------------------------


def run_evaluation(
    pipeline: Pipeline,
    source: ImageSource,
    out_dir: str | Path,
    config: EvaluationConfig = EvaluationConfig(),
    reference: ImageSource | None = None,
    invert_fn: InvertFn | None = None,
    features: FeatureNetwork | None = None,
    progress: bool = True,
    extra_metadata: dict[str, Any] | None = None,
    executor: Callable[[list[tuple[list[int], str]], Any], None] | None = None,
    identity: IdentityMeter | None = None,
) -> EvaluationPaths:
    """Evaluate ``config.methods`` on ``source`` into ``out_dir``, resuming whatever is already done there.

    ``pipeline`` is a ``magec.pipeline.Pipeline`` (generator, describer, editors, perceptual,
    device). ``reference`` holds real images for the realism score; without it, ``config.reference_size``
    generator samples are used, and the run metadata says so. ``executor(todo, bar)``, when given, runs the
    unfinished (chunk indices, method) pairs elsewhere (each through :func:`evaluate_and_record`).
    ``identity`` measures dlib identity distances when ``config.identity`` (default: dlib's network, loaded here).
    """
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
    _check_or_write_metadata(paths, metadata)
    manifold = _reference_manifold(paths, reference, features, config, pipeline.device, progress)
    meter = _identity_meter(config, pipeline.device, identity)
    paste = PasteMeter() if config.paste_back else None
    ctx = _Context(pipeline, config, paths, invert_fn or _default_invert(), features, manifold, editors, meter, paste)

    chunks = [list(range(i, min(i + config.batch_size, len(source)))) for i in range(0, len(source), config.batch_size)]
    todo = [(c, m) for c in chunks for m in config.methods if not all(_record_done(paths, m, source.ids[i]) for i in c)]
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
    write_csvs(paths, source.ids, config.methods)
    return paths


def evaluate_and_record(ctx: _Context, source: ImageSource, chunk: list[int], method: str) -> None:
    """Evaluate one chunk of ``source`` with ``method`` and write each image's record atomically."""
    ids = [source.ids[i] for i in chunk]
    images = source.load(chunk).to(ctx.pipeline.device)
    faces = source.locate(chunk) if ctx.paste is not None else None
    for image_id, record in zip(ids, _evaluate_chunk(ctx, method, images, ids, faces)):
        atomic.write_json(ctx.paths.record(method, image_id), record)


def worker_context(
    pipeline: Pipeline, out_dir: str | Path, config: EvaluationConfig, features: FeatureNetwork | None = None
) -> _Context:
    """The context of a run that a driver has set up (run.json, reference features), for another process."""
    paths = EvaluationPaths(Path(out_dir))
    cache = paths.root / "reference_features.pt"
    if not paths.run_json.is_file() or not cache.is_file():
        raise file_error(paths.root, "is not a prepared evaluation run (no run.json or reference features)")
    features = features or realism_features(pipeline.describer, pipeline.device, seed=config.seed)
    manifold = build_manifold(torch.load(cache, map_location="cpu", weights_only=True), config.realism)
    config = with_default_editors(config, pipeline)
    editors = _select_editors(pipeline, config.editors)
    _check_encoder(pipeline, config)
    meter = _identity_meter(config, pipeline.device)
    paste = PasteMeter() if config.paste_back else None
    return _Context(pipeline, config, paths, _default_invert(), features, manifold, editors, meter, paste)


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


#: The paper's editors (always evaluated by default) and the ones added when the pack has them.
PAPER_EDITORS = editor_kinds(paper=True)
OPTIONAL_EDITORS = editor_kinds(paper=False)


def default_editors(pipeline: Pipeline) -> tuple[str, ...]:
    """The paper's InterfaceGAN, GANSpace and interpolation, then SeFa and StyleFlow if the pipeline has them."""
    return PAPER_EDITORS + tuple(n for n in OPTIONAL_EDITORS if n in pipeline.editors)


def with_default_editors(config: EvaluationConfig, pipeline: Pipeline) -> EvaluationConfig:
    """``config`` with its editors resolved (so the run metadata names them and resumes compare them)."""
    return config if config.editors is not None else replace(config, editors=default_editors(pipeline))


def _select_editors(pipeline: Pipeline, names: Sequence[str]) -> dict[str, LatentEditor]:
    available = dict(pipeline.editors)
    missing = [n for n in names if n not in available]
    if missing:
        raise MagecError(
            f"--editors: the pack has no {', '.join(missing)} editor (it has: {', '.join(sorted(available)) or 'none'})"
        )
    return {n: available[n] for n in names}


def _check_or_write_metadata(paths: EvaluationPaths, metadata: dict[str, Any]) -> None:
    """A resumed run must measure exactly what the first run measured; anything else is refused."""
    if paths.run_json.exists():
        try:
            previous = json.loads(paths.run_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise file_error(
                paths.run_json, f"unreadable run description ({exc}); remove the folder to start over"
            ) from None
        if previous != json.loads(json.dumps(metadata)):
            changed = sorted(
                k for k in set(previous) | set(metadata) if previous.get(k) != json.loads(json.dumps(metadata.get(k)))
            )
            raise file_error(
                paths.root,
                f"holds a run with different settings ({', '.join(changed)}); use another --out to start a new one",
            )
        return
    atomic.write_json(paths.run_json, metadata)


def _record_done(paths: EvaluationPaths, method: str, image_id: str) -> bool:
    path = paths.record(method, image_id)
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("version") == RECORD_VERSION
    except (OSError, ValueError):
        return False  # a damaged record is recomputed


@torch.no_grad()
def _extract(features: FeatureNetwork, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
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


def _reference_manifold(
    paths: EvaluationPaths,
    reference: ImageSource,
    features: FeatureNetwork,
    config: EvaluationConfig,
    device: torch.device,
    progress: bool,
) -> ReferenceManifold:
    """Reference features, computed once per run folder and reloaded on resume."""
    cache = paths.root / "reference_features.pt"
    if cache.is_file():
        feats = torch.load(cache, map_location="cpu", weights_only=True)
    else:
        parts = []
        step = 64
        for i in tqdm(range(0, len(reference), step), desc="reference features", disable=not progress):
            idx = list(range(i, min(i + step, len(reference))))
            parts.append(_extract(features, reference.load(idx).to(device)))
        feats = torch.cat(parts)
        with atomic.atomic_path(cache) as tmp:
            torch.save(feats, tmp)
    return build_manifold(feats, config.realism)


# ---- one chunk, one method ---------------------------------------------------------------------


def _apply(ctx: _Context, latents: torch.Tensor, ops: Sequence[EditOp], invert: bool = False) -> torch.Tensor:
    """Edit copy k of ``latents`` (k-th row, or the one row repeated) with ``ops[k]``; inverse edits with ``invert``."""
    rows = []
    for k, op in enumerate(ops):
        lat = latents[k : k + 1] if latents.shape[0] == len(ops) else latents[:1]
        rows.append(ctx.editors[op.editor].edit(lat, op.operation, -op.amount if invert else op.amount))
    return torch.cat(rows)


def _synth(
    ctx: _Context, latents: torch.Tensor, space: str, noise: list[torch.Tensor] | None, generator: Any = None
) -> torch.Tensor:
    """Images of ``latents``: with ``generator`` (a ``+pti`` image's tuned one) or the pipeline's."""
    return (generator or ctx.pipeline.generator).synthesize(latents, space=space, noise=noise).detach()


def _synth_chunked(
    ctx: _Context, latents: torch.Tensor, space: str, noise: list[torch.Tensor] | None, generator: Any = None
) -> torch.Tensor:
    """:func:`_synth` of many codes (ECS edits), in chunks sized from the memory budget, split on out-of-memory.

    The images (42 edits of a 1024-px image: 0.5 GB) are kept; the activations are bounded by the chunk."""
    gen = generator or ctx.pipeline.generator
    size = chunk_size(synthesis_bytes(gen), ctx.pipeline.device, cap=len(latents)).size

    def part(start: int, stop: int) -> torch.Tensor:
        rows = noise if noise is None else [n[start:stop] if n.shape[0] == len(latents) else n for n in noise]
        return _synth(ctx, latents[start:stop], space, rows, generator)

    return torch.cat(map_chunks(part, len(latents), size, device=ctx.pipeline.device, resolution=gen.resolution))


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


def _identity_references(ctx: _Context, images: torch.Tensor) -> list[Any] | None:
    """Each input image's dlib chip and descriptor (None when identity is not measured)."""
    if ctx.identity is None:
        return None
    return [ctx.identity.reference(images[b]) for b in range(images.shape[0])]


def _identity_distances(ctx: _Context, refs: list[Any] | None, b: int, images: torch.Tensor) -> list[float | None]:
    """dlib distance input ``b`` -> each of ``images``, rounded like every record number (None: not measured)."""
    if refs is None:
        return [None] * images.shape[0]
    return [_num(d) for d in ctx.identity.distances(refs[b], images)]


def _attribute_scores(ctx: _Context, images: torch.Tensor, attributes: Sequence[str]) -> list[float]:
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


def _lacks_attributes(ctx: _Context, image: torch.Tensor) -> dict[str, bool | None]:
    """For each binary attribute: does the real image lack it (P < 0.5)? Continuous attributes: None."""
    layout = ctx.pipeline.describer.layout
    probs = ctx.pipeline.describer(image).detach()
    out: dict[str, bool | None] = {}
    for a in layout.attributes:
        out[a.name] = bool(float(attribute_probability(layout, probs, a.name)[0]) < 0.5) if a.kind == "binary" else None
    return out


@torch.no_grad()
def _evaluate_chunk(
    ctx: _Context, method: str, images: torch.Tensor, ids: list[str], faces: list[PhotoFace] | None = None
) -> list[dict[str, Any]]:
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

    # random edits: realism (every editor) and improved target (attribute editors)
    for b, image_id in enumerate(ids):
        ops = random_edits(ctx.editors, image_id, cfg.seed, cfg.plan)
        if not ops:
            if faces is not None:
                records[b]["paste"] = _pasted(ctx, faces[b], recon[b], recon[:0], [])
            continue
        lat = proj.latents[b : b + 1].detach()
        edited = _synth_chunked(
            ctx, _apply(ctx, lat, ops), proj.space, select_noise(proj.noise, b, len(ops)), _tuned(proj, b)
        )
        if faces is not None:
            records[b]["paste"] = _pasted(ctx, faces[b], recon[b], edited, ops)
        realism = realism_score(ctx.manifold, _extract(ctx.features, edited))
        identity = _identity_distances(ctx, refs, b, edited)
        attr_ops = [k for k, op in enumerate(ops) if ctx.editors[op.editor].traits.family == ATTRIBUTE]
        before = after = {}
        if attr_ops:
            names = [ops[k].operation for k in attr_ops]
            before = dict(zip(attr_ops, _attribute_scores(ctx, recon[b : b + 1].expand(len(names), -1, -1, -1), names)))
            after = dict(zip(attr_ops, _attribute_scores(ctx, edited[attr_ops], names)))
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
            records[b]["edits"].append(row)

    if cfg.ecs:
        _edit_consistency(ctx, method, images, ids, proj, recon, records, refs)
    if cfg.save_images:
        for b, image_id in enumerate(ids):
            real_png = ctx.paths.image_dir(image_id) / "real.png"
            if not real_png.exists():
                save_png(images[b].cpu(), real_png)
            save_png(recon[b].cpu(), ctx.paths.image_dir(image_id, method) / "projection.png")
    return records


def _pasted(ctx: _Context, face: PhotoFace, recon: torch.Tensor, edited: torch.Tensor, ops: Sequence[EditOp]) -> list:
    """``--paste-back`` rows of one face: its projection and each edit pasted into its photo, every mode."""
    assert ctx.paste is not None
    rows = ctx.paste.measure(face, tensor_to_pil(recon.cpu()), [tensor_to_pil(e.cpu()) for e in edited])
    for row in rows:
        if row["edit"] >= 0:
            op = ops[row["edit"]]
            row |= {"editor": op.editor, "operation": op.operation, "amount": op.amount}
    return rows


def _edit_consistency(
    ctx: _Context,
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
    ctx: _Context,
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
    from dataclasses import replace

    from magec.inversion.config import base_method

    base = base_method(method)
    cycles, seconds = [None] * len(plans), 0.0
    for b in sorted(set(owners)):
        rows = _rows(owners, b)
        pipe = replace(ctx.pipeline, generator=tuned[b])  # the same parts, with this image's tuned generator
        latents, space, noise, took = _reproject(ctx, pipe, x_edit[rows], base, ids[b])
        back = _apply(ctx, latents, [plans[k] for k in rows], invert=True)
        for k, image in zip(rows, _synth_chunked(ctx, back, space, noise, tuned[b])):
            cycles[k] = image
        seconds += took
    return torch.stack(cycles), seconds


# ---- CSVs ----------------------------------------------------------------------------------------


def _csv_text(columns: Sequence[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: ("" if row.get(c) is None else row.get(c, "")) for c in columns})
    return buf.getvalue()


def write_csvs(paths: EvaluationPaths, image_ids: Sequence[str], methods: Sequence[str]) -> None:
    """Rebuild the four CSVs from the records, in input order then method order."""
    rec_rows, edit_rows, ecs_rows, time_rows, paste_rows = [], [], [], [], []
    for image_id in image_ids:
        for method in methods:
            path = paths.record(method, image_id)
            if not path.is_file():
                continue
            r = json.loads(path.read_text(encoding="utf-8"))
            key = {"image": image_id, "method": method}
            rec_rows.append(key | r["reconstruction"])
            edit_rows.extend(key | e for e in r["edits"])
            ecs_rows.extend(key | e for e in r["ecs"])
            time_rows.append(key | {k: round(v, 3) for k, v in r["timing"].items()})
            paste_rows.extend(key | p for p in r.get("paste", []))
    atomic.write_text(paths.reconstruction_csv, _csv_text(RECONSTRUCTION_COLUMNS, rec_rows))
    atomic.write_text(paths.edits_csv, _csv_text(EDIT_COLUMNS, edit_rows))
    atomic.write_text(paths.ecs_csv, _csv_text(ECS_COLUMNS, ecs_rows))
    atomic.write_text(paths.timing_csv, _csv_text(TIMING_COLUMNS, time_rows))
    if paste_rows:  # only runs with --paste-back have the file
        atomic.write_text(paths.paste_csv, _csv_text(PASTE_COLUMNS, paste_rows))
