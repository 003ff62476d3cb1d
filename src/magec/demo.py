"""``magec demo``: the main job on the embedded default, end to end, in a few minutes on a CPU.

Prepare (or reuse) the embedded pack, invert a real photo (scikit-image's astronaut, face-cropped) and
a few generated faces the pack never saw with the three methods (and, when the pack has its encoder, with
``encoder`` and ``encoder+magec``), edit every projection with InterfaceGAN, GANSpace and interpolation, and
write a self-contained ``index.html`` (PNG grids inlined) with the losses and timings.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from magec import validation
from magec.describers import EMBEDDED_DESCRIBER, load_describer
from magec.devices import resolve_device
from magec.faces.crop import frame_face_crop
from magec.faces.frame import FaceFrame
from magec.faces.paste import face_landmarks_for, face_mask, paste_edit
from magec.faces.recognition import FaceRecognizer
from magec.generators import load_generator
from magec.generators.base import select_noise
from magec.inversion import METHODS, InversionResult, ProgressBar, invert, method_config
from magec.inversion.config import MEAN_PTI_METHODS, PAPER_METHODS
from magec.inversion.pti import PTIConfig
from magec.io.images import pil_to_tensor, save_png, tensor_to_pil
from magec.io.output_folder import OutputFolder
from magec.latent.kinds import TARGET
from magec.losses.mse import mse_per_image
from magec.pipeline import Pipeline, assemble_pipeline, pack_encoder
from magec.prepare import EMBEDDED_ENCODER, EMBEDDED_PACK, PrepareConfig, embedded_pack
from magec.render import apply_edits
from magec.visualize import image_grid, new_figure, save_figure
from magec.weights import magec_cache_dir

log = logging.getLogger("magec")

#: Seeds of the held-out generated faces start here, far from the pack's sampling stream.
HELDOUT_SEED = 10_000
#: Compared with the paper's methods when the pack holds its encoder: the encoder's code alone (one forward pass)
#: and ``magec`` started from it (a quarter of the steps), so the page shows what the encoder buys.
ENCODER_DEMO_METHODS = ("encoder", "encoder+magec")


@dataclass
class DemoConfig:
    out: Path = Path("magec-demo")
    #: Where the embedded pack is kept between runs: None is magec's one cache, ``$MAGEC_CACHE`` or
    #: ``~/.cache/magec`` (the API's ``load_pipeline()``, ``magec studio``, ``invert`` and ``edit`` use the same).
    cache: Path | None = None
    generated: int = 3
    seed: int = 0
    steps_scale: float = 1.0
    device: str = "auto"
    perceptual: str = "auto"
    methods: tuple[str, ...] = PAPER_METHODS
    #: Methods with pivotal tuning, run on the real photo only (they tune one generator per image).
    pti_methods: tuple[str, ...] = MEAN_PTI_METHODS
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    #: Train the embedded encoder with the pack when the pack must be prepared (as ``load_pipeline()`` does).
    encoder: bool = True
    #: Write into an existing ``out`` that holds other files (files magec did not write are never replaced).
    force: bool = False

    def __post_init__(self) -> None:
        self.out, self.cache = Path(self.out), Path(self.cache) if self.cache is not None else magec_cache_dir()
        validation.integer("--generated", self.generated, 0, 64)
        validation.integer("--seed", self.seed, 0)
        validation.positive("--steps-scale", self.steps_scale)
        for method in (*self.methods, *self.pti_methods):
            validation.choice("method", method, METHODS)


def _png_data(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def edit_grid(
    pipeline: Pipeline,
    inputs: torch.Tensor,
    names: list[str],
    results: dict[str, InversionResult],
    editor: str,
    target: Path,
) -> Path:
    """Rows (input, method); columns original, projection, then the editor's edits (Fig. 3 of the paper)."""
    ed = pipeline.editors[editor]
    walks = ed.traits.family == TARGET
    if walks:  # towards the default sample, t in [0, 1]
        operations, amounts = ed.traits.default_operations(ed.operations()), [0.25, 0.5, 0.75]
    else:
        operations, amounts = ed.operations()[:2], [-ed.default_amount, ed.default_amount]
    layout = pipeline.describer.layout
    rows, labels, cells = [], [], []
    with torch.no_grad():
        for i, name in enumerate(names):
            for method, res in results.items():
                edits = apply_edits(
                    pipeline, res.latents[i : i + 1], res.space, select_noise(res.noise, i), editor, operations, amounts
                )
                row = [inputs[i], res.images[i], *(e.image for op_row in edits for e in op_row)]
                rows.append(row)
                labels.append(f"{name}\n{method}")
                cells.append(layout.captions(pipeline.describer(torch.stack(row)), sep=" "))
    cols = ["original", "projection"] + [
        f"t={amt}" if walks else f"{op} {amt:+.2f}" for op in operations for amt in amounts
    ]
    return image_grid(
        rows,
        target,
        row_labels=labels,
        col_labels=cols,
        cell_labels=cells,
        title=f"{editor} edits; captions: F's predictions",
        cell=1.5,
    )


def loss_plot(results: dict[str, InversionResult], target: Path) -> Path:
    fig = new_figure((10, 3.2))
    axes = fig.subplots(1, 2)
    for method, res in results.items():
        steps = [h["step"] for h in res.history]
        axes[0].plot(steps, [sum(h["mse"]) / len(h["mse"]) for h in res.history], label=method)
        if all("perceptual" in h for h in res.history):
            axes[1].plot(steps, [sum(h["perceptual"]) / len(h["perceptual"]) for h in res.history], label=method)
    for ax, title in zip(axes, ("MSE (mean over images)", "perceptual (mean over images)")):
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, target)


def run_demo(config: DemoConfig | None = None, progress: bool = True) -> Path:
    """Run the demo; returns the path of ``index.html``."""
    config = config or DemoConfig()
    out = OutputFolder.open(config.out, "demo", config.force)  # before minutes of work
    device = resolve_device(config.device)
    generator = load_generator("dcgan-face", device)
    describer = load_describer(EMBEDDED_DESCRIBER, device)
    encoder = EMBEDDED_ENCODER if config.encoder else None
    pack = embedded_pack(config.cache, config.prepare, device, progress, generator, describer, encoder)
    # The pack's own encoder, when it has one (trained with it, or added by ``magec train-encoder``).
    encoder_net = pack_encoder((config.cache or magec_cache_dir()) / EMBEDDED_PACK, generator, device)
    pipeline = assemble_pipeline(
        generator, describer, pack, perceptual=config.perceptual, device=device, encoder=encoder_net
    )
    methods = (*config.methods, *(ENCODER_DEMO_METHODS if encoder_net is not None else ()))

    size = generator.resolution
    photo = astronaut_photo()
    crop, frame = frame_face_crop(photo, size)
    astronaut = pil_to_tensor(crop)
    with torch.no_grad():
        generated = generator.synthesize(generator.sample_latents(config.generated, HELDOUT_SEED + config.seed)).cpu()
    inputs = torch.cat([astronaut, generated]).to(device)
    names = ["astronaut"] + [f"generated-{k}" for k in range(config.generated)]

    results: dict[str, InversionResult] = {}
    for method in methods:
        bar = ProgressBar(f"invert [{method}] x{len(names)}") if progress else None
        results[method] = invert(pipeline, inputs, method, method_config(method, config.steps_scale), config.seed, bar)
    tuned: dict[str, InversionResult] = {}
    for method in config.pti_methods:
        bar = ProgressBar(f"invert [{method}] astronaut") if progress else None
        config_m = method_config(method, config.steps_scale)
        pti = PTIConfig().scaled(config.steps_scale)
        tuned[method] = invert(pipeline, inputs[:1], method, config_m, config.seed, bar, pti=pti)

    config.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{config.out.name}.", dir=config.out.parent) as staging:
        tmp = Path(staging)
        for i, name in enumerate(names):
            save_png(inputs[i], tmp / f"input-{name}.png")
        recon_rows = [[inputs[i]] + [results[m].images[i] for m in results] for i in range(len(names))]
        recon_cells = [
            [""] + [f"mse {float(mse_per_image(results[m].images[i : i + 1], inputs[i : i + 1])):.4f}" for m in results]
            for i in range(len(names))
        ]
        figures = {
            "reconstructions": image_grid(
                recon_rows,
                tmp / "reconstructions.png",
                row_labels=names,
                col_labels=["original", *results],
                cell_labels=recon_cells,
                title="projections",
                cell=1.6,
            )
        }
        for editor in pipeline.editors:  # one grid per editor: InterfaceGAN, GANSpace, SeFa, StyleFlow, ...
            figures[f"edits-{editor}"] = edit_grid(
                pipeline, inputs, names, results, editor, tmp / f"edits-{editor}.png"
            )
        figures["losses"] = loss_plot(results, tmp / "losses.png")
        figures["your-photo-back"], photo_rows = photo_back_grid(
            pipeline, photo, frame, {m: r for m, r in results.items()}, tuned, tmp / "your-photo-back.png"
        )
        summary = {
            "settings": pipeline.settings(),
            "pack": {
                "linknet_heldout": pack.info.get("linknet", {}).get("heldout_report"),
                "prepare_seconds": pack.info.get("prepare", {}).get("seconds"),
            },
            "methods": {
                m: {
                    "steps": r.steps,
                    "seconds_per_image": round(r.seconds / len(names), 2),
                    "final_mse": dict(zip(names, [round(v, 5) for v in r.history[-1]["mse"]])),
                    "final_perceptual": dict(
                        zip(names, [round(v, 5) for v in r.history[-1].get("perceptual", [float("nan")] * len(names))])
                    ),
                    "notes": r.notes,
                }
                for m, r in results.items()
            },
            "astronaut_pasted_back": photo_rows,
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        (tmp / "index.html").write_text(render_html(summary, figures, names), encoding="utf-8")
        with out.releasing():  # Ctrl-C between the renames withdraws what did not arrive (no half page listed)
            out.publish(tmp)
    return config.out / "index.html"


def astronaut_photo() -> Image.Image:
    """scikit-image's ``astronaut`` portrait (public domain; it ships in the package)."""
    from skimage import data

    return Image.fromarray(data.astronaut())


def photo_back_grid(
    pipeline: Pipeline,
    photo: Image.Image,
    frame: FaceFrame,
    results: dict[str, InversionResult],
    tuned: dict[str, InversionResult],
    target: Path,
) -> tuple[Path, dict[str, dict[str, float]]]:
    """The astronaut as the user gets her back: each method's projection and a male -/+ edit pasted into
    the photo (zoomed on the face) in both paste modes (composite: the generator's face blended over the photo;
    sharp: the edit's change added to the photo, whose amount 0 is the photo itself), with dlib's same-person
    distance to the photo under each (< 0.6: same)."""
    recognizer = FaceRecognizer()
    landmarks = face_landmarks_for(photo, frame)
    mask = face_mask(photo.size, landmarks)
    editor = pipeline.pack.interfacegan
    amount = editor.default_amount
    corners = frame.square_corners()
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    pad = 0.15 * (x1 - x0)
    box = tuple(
        int(round(v))
        for v in (max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, photo.width), min(y1 + pad, photo.height))
    )
    zoom = lambda img: pil_to_tensor(img.crop(box).resize((256, 256), Image.Resampling.LANCZOS))[0]
    rows, labels, cells, record = [], [], [], {}
    for method, res in {**results, **tuned}.items():
        generator = res.tuned[0] if res.tuned else pipeline.generator
        z = res.latents[:1]
        noise = select_noise(res.noise, 0)
        with torch.no_grad():
            crops = [
                tensor_to_pil(generator.synthesize(editor.edit(z, "male", a), space=res.space, noise=noise)[0])
                for a in (0.0, -amount, amount)
            ]
        composite = [paste_edit(photo, c, crops[0], frame, landmarks, mask, "composite") for c in crops]
        sharp = [paste_edit(photo, c, crops[0], frame, landmarks, mask, "sharp") for c in crops[1:]]
        distances = [recognizer.distance(photo, p) for p in (*composite, *sharp)]
        rows.append([zoom(photo), *(zoom(p) for p in (*composite, *sharp))])
        labels.append(method)
        cells.append(["photo", *(f"dlib {d:.2f}" for d in distances)])
        record[method] = {
            "projection": round(distances[0], 3),
            "male-": round(distances[1], 3),
            "male+": round(distances[2], 3),
            "sharp male-": round(distances[3], 3),
            "sharp male+": round(distances[4], 3),
        }
    cols = [
        "your photo",
        "composite: projection",
        f"composite: male {-amount:+.1f}",
        f"composite: male {amount:+.1f}",
        f"sharp: male {-amount:+.1f}",
        f"sharp: male {amount:+.1f}",
    ]
    title = "the astronaut, pasted back (composite, then sharp); dlib distance to the photo (< 0.6: same person)"
    return image_grid(
        rows, target, row_labels=labels, col_labels=cols, cell_labels=cells, title=title, cell=2.0
    ), record


def render_html(summary: dict, figures: dict[str, Path], names: list[str]) -> str:
    esc = html.escape
    rows = []
    for m, s in summary["methods"].items():
        for n in names:
            rows.append(
                f"<tr><td>{esc(m)}</td><td>{esc(n)}</td><td>{s['steps']}</td><td>{s['final_mse'][n]:.4f}</td><td>{s['final_perceptual'][n]:.4f}</td><td>{s['seconds_per_image']}</td></tr>"
            )
    notes = sorted({note for s in summary["methods"].values() for note in s["notes"]})
    settings = ", ".join(f"{k}: {esc(str(v))}" for k, v in summary["settings"].items())
    encoders = (
        "; encoder (the pack's encoder's code alone: one forward pass) and encoder+magec (magec started from that "
        "code, a quarter of the steps)"
        if set(ENCODER_DEMO_METHODS) <= set(summary["methods"])
        else ""
    )
    imgs = "\n".join(f"<h2>{esc(k)}</h2><img src='{_png_data(p)}' alt='{esc(k)}'>" for k, p in figures.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>magec demo</title>
<style>body{{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}} img{{max-width:100%}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}</style></head>
<body><h1>magec demo: editable inversion on the embedded default</h1>
<p>Inputs: scikit-image's <i>astronaut</i> photo (face-cropped like the generator's faces) and
{len(names) - 1} generated faces the pack never saw. Methods: magec (the paper's Eq. 3 and two-phase
protocol), no-magec (the ablation), im2stylegan++ (Eq. 1, 1000 latent steps){encoders}.</p>
<p>Settings: {settings}</p>
<p>Notes: {esc("; ".join(notes)) or "none"}</p>
<table><tr><th>method</th><th>image</th><th>steps</th><th>final MSE</th><th>final perceptual</th><th>s / image</th></tr>
{"".join(rows)}</table>
{imgs}
</body></html>
"""
