"""The two paste-back modes on the real-photo set: sharpness, closeness to the photo, identity (issue 22).

    PYTHONPATH=src OMP_NUM_THREADS=1 python docs/figures/paste_study.py [--steps-scale 1] [--out docs/results/paste-back.md]
        [--figure docs/figures/astronaut-pasted-back.png]

Every face dlib finds in face-api's six demo photos (``scripts/fetch_face_api.sh photos``; the 20 faces of
``docs/results/real-photos.md``, found as ``magec evaluate --face-crop`` finds them) is framed for the embedded
DCGAN, inverted with ``magec`` on the embedded default (the cached pack, its default identity loss; nothing is
trained), and the InterfaceGAN edits male -/+ and age -/+ at the editor's default amount are pasted back into the
photo with ``magec.faces.paste.paste_edit`` in both modes (``sharp``, ``composite``). Per mode:

- sharpness: variance of the Laplacian of the grey pasted photo in the face region (landmark mask > 0.5) over the
  photo's own there (1.0: as sharp as the photo);
- at amount 0 (the projection pasted back): MSE to the photo outside the mask (weight 0: the photo's bytes must
  stay) and inside the face region, pixels in [0, 1];
- dlib's identity distance (``FaceRecognizer``: its C++ network) between the photo and each pasted edit, on a
  crop around the face, and the share under dlib's same-person threshold 0.6.

Faces are paired across modes: paired t-tests (``scipy.stats.ttest_rel``) on the per-face means, sharp vs composite.
``--figure``: the astronaut through ``magec.demo.photo_back_grid`` (the figure ``magec demo`` draws: composite,
then sharp), with ``magec demo``'s five methods at the same ``--steps-scale``, the identity loss off as in the demo.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.ndimage
import scipy.stats
import torch
from PIL import Image

import magec
from magec.demo import astronaut_photo, photo_back_grid
from magec.evaluation.sources import image_files
from magec.faces.detection import DETECTION_SIDE, LandmarkDetector
from magec.faces.framing import frame_face_located
from magec.faces.paste import PASTE_MODES, face_mask, located_face_landmarks, paste_edit
from magec.faces.recognition import SAME_PERSON, FaceRecognizer
from magec.generators.base import select_noise
from magec.inversion import invert, method_config
from magec.inversion.config import PAPER_METHODS, PTI_METHODS
from magec.inversion.pti import PTIConfig
from magec.io.images import pil_to_tensor, read_image, tensor_to_pil
from magec.weights import magec_cache_dir

EDITS = (("male", -1.0), ("male", 1.0), ("age", -1.0), ("age", 1.0))
METRICS = ("sharpness", "mse_outside", "mse_face", "id")


def laplacian_variance(image: Image.Image, region: np.ndarray) -> float:
    """Variance of the Laplacian of ``image``'s grey values over the boolean ``region``: a focus measure."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    return float(scipy.ndimage.laplace(grey)[region].var())


def sharpness_share(image: Image.Image, photo: Image.Image, region: np.ndarray) -> float:
    """``image``'s Laplacian variance in ``region`` as a share of ``photo``'s (1.0: as sharp as the photo)."""
    return laplacian_variance(image, region) / laplacian_variance(photo, region)


def mse(image: Image.Image, photo: Image.Image, region: np.ndarray) -> float:
    """Mean squared difference of the RGB pixels (in [0, 1]) in ``region``."""
    a = np.asarray(image.convert("RGB"), dtype=np.float64)[region] / 255
    b = np.asarray(photo.convert("RGB"), dtype=np.float64)[region] / 255
    return float(((a - b) ** 2).mean())


def same_person_share(distances: np.ndarray) -> tuple[float, int]:
    """The share of measured distances under dlib's threshold, and how many were measured (NaN: no face found)."""
    found = distances[~np.isnan(distances)]
    return (float(np.mean(found < SAME_PERSON)) if len(found) else float("nan")), len(found)


def faces_of(folder: Path, size: int, max_faces: int) -> list[dict]:
    """Each face in the photos of ``folder`` as ``magec evaluate --face-crop`` finds them (photo by photo, largest
    first), with its frame, landmarks, mask, and the crop box (the framed square plus 30%) dlib is measured on."""
    detector = LandmarkDetector()
    faces: list[dict] = []
    for i, path in enumerate(image_files(folder)):
        photo = read_image(path, reduce_to=DETECTION_SIDE)
        found = detector.detect(photo)
        for k in range(len(found)):
            if len(faces) >= max_faces:
                return faces
            crop, frame = frame_face_located(photo, size, "face-crop", k, found)
            landmarks, _ = located_face_landmarks(photo, frame, faces=found)
            corners = frame.square_corners()
            (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
            pad = 0.3 * (x1 - x0)
            box = tuple(
                int(v)
                for v in (max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, photo.width), min(y1 + pad, photo.height))
            )
            centre = (corners.mean(0) - np.array(box[:2])).tolist()
            mask = face_mask(photo.size, landmarks)
            faces.append(
                {"name": f"{i:05d}-{path.stem}-face{k}", "photo": photo, "crop": crop, "frame": frame,
                 "landmarks": landmarks, "mask": mask, "box": box, "centre": tuple(centre)}
            )  # fmt: skip
    return faces


def measure(pipe: magec.Pipeline, faces: list[dict], steps_scale: float) -> tuple[dict, float]:
    """Invert every face with magec, paste the edits back in both modes; per mode and metric, one value per face."""
    recognizer = FaceRecognizer()
    editor = pipe.pack.interfacegan
    inputs = torch.cat([pil_to_tensor(f["crop"]) for f in faces])
    res = invert(pipe, inputs, "magec", method_config("magec", steps_scale), seed=0)
    values = {mode: {m: [] for m in METRICS} for mode in PASTE_MODES}
    for i, f in enumerate(faces):
        photo, box, near = f["photo"], f["box"], f["centre"]
        z = res.latents[i : i + 1]
        noise = select_noise(res.noise, i)
        with torch.no_grad():
            codes = [z, *(editor.edit(z, op, sign * editor.default_amount) for op, sign in EDITS)]
            base, *edited = (
                tensor_to_pil(pipe.generator.synthesize(c, space=res.space, noise=noise)[0]) for c in codes
            )
        face, outside = f["mask"] > 0.5, f["mask"] == 0
        photo_crop = photo.crop(box)
        for mode in PASTE_MODES:
            v = values[mode]
            rest = paste_edit(photo, base, base, f["frame"], f["landmarks"], f["mask"], mode)
            v["mse_outside"].append(mse(rest, photo, outside))
            v["mse_face"].append(mse(rest, photo, face))
            pasted = [paste_edit(photo, sq, base, f["frame"], f["landmarks"], f["mask"], mode) for sq in edited]
            v["sharpness"].append([sharpness_share(p, photo, face) for p in pasted])
            v["id"].append([recognizer.distance(photo_crop, p.crop(box), near) for p in pasted])
    return {
        mode: {m: np.array(x, dtype=np.float64) for m, x in v.items()} for mode, v in values.items()
    }, editor.default_amount


def report(values: dict, faces: list[dict], amount: float, command: str, load: str, seconds: float) -> str:
    """The Markdown report: one column per mode, then the paired t-tests."""
    rows = []
    for mode in PASTE_MODES:
        v = values[mode]
        share, found = same_person_share(v["id"].ravel())
        rows.append(
            {
                "sharpness (Laplacian variance in the face / photo's), mean [min]": f"{v['sharpness'].mean():.3f} "
                f"[{v['sharpness'].min():.3f}]",
                "amount 0: MSE to the photo outside the mask": f"{v['mse_outside'].mean():.2g}",
                "amount 0: MSE to the photo in the face region": f"{v['mse_face'].mean():.3g}",
                "dlib distance photo - pasted edit, mean": f"{np.nanmean(v['id']):.3f}",
                "same person (< 0.6) after edits": f"{share:.0%} ({found} of {v['id'].size} measured)",
            }
        )
    lines = [
        "# Paste-back: sharp vs composite on real photos",
        "",
        "Regenerate with:",
        "",
        "```",
        command,
        "```",
        "",
        f"{len(faces)} faces (every face dlib finds in face-api 1.7.15's six demo photos, as in "
        "[real-photos.md](real-photos.md)), inverted with `magec` on the embedded default (cached pack, default "
        f"identity loss); InterfaceGAN male -/+ and age -/+ at the default amount ({amount:.2f}) pasted back in "
        f"both modes ({values['sharp']['id'].size} edits per mode). Wall time {seconds:.0f} s; `uptime` at the "
        f"start: {load}.",
        "",
        "| measure | " + " | ".join(PASTE_MODES) + " |",
        "|---|" + "---|" * len(PASTE_MODES),
    ]
    lines += [f"| {key} | " + " | ".join(r[key] for r in rows) + " |" for key in rows[0]]
    lines += [
        "",
        "Paired t-tests over the faces (per-face means of the 4 edits; faces where dlib found no face in either "
        "mode left out), sharp vs composite:",
        "",
        "| measure | n | sharp mean | composite mean | t | p |",
        "|---|---|---|---|---|---|",
    ]
    for metric in METRICS:
        a, b = values["sharp"][metric], values["composite"][metric]
        if a.ndim == 2:
            a, b = np.nanmean(a, axis=1), np.nanmean(b, axis=1)
        keep = ~(np.isnan(a) | np.isnan(b))
        if np.array_equal(a[keep], b[keep]):  # no difference to test
            lines.append(
                f"| {metric} | {int(keep.sum())} | {a[keep].mean():.4g} | {b[keep].mean():.4g} | – | – (equal) |"
            )
            continue
        test = scipy.stats.ttest_rel(a[keep], b[keep])
        lines.append(
            f"| {metric} | {int(keep.sum())} | {a[keep].mean():.4g} | {b[keep].mean():.4g} "
            f"| {test.statistic:.2f} | {test.pvalue:.2g} |"
        )
    lines += ["", "Per face (sharp / composite): sharpness share, dlib distance (mean of the 4 edits).", ""]
    lines += ["| face | sharpness | dlib distance |", "|---|---|---|"]
    for i, f in enumerate(faces):
        s, c = values["sharp"], values["composite"]
        lines.append(
            f"| {f['name']} | {s['sharpness'][i].mean():.2f} / {c['sharpness'][i].mean():.2f} "
            f"| {np.nanmean(s['id'][i]):.3f} / {np.nanmean(c['id'][i]):.3f} |"
        )
    return "\n".join(lines) + "\n"


def figure(steps_scale: float, target: Path) -> dict:
    """The astronaut pasted back by ``magec demo``'s methods (its grid), written to ``target``."""
    pipe = magec.load_pipeline(device="cpu", identity="none")  # as `magec demo`
    photo = astronaut_photo()
    crop, frame = frame_face_located(photo, pipe.generator.resolution, "face-crop")
    x = pil_to_tensor(crop)
    results = {m: invert(pipe, x, m, method_config(m, steps_scale), seed=0) for m in PAPER_METHODS}
    pti = PTIConfig().scaled(steps_scale)
    tuned = {m: invert(pipe, x, m, method_config(m, steps_scale), seed=0, pti=pti) for m in PTI_METHODS}
    with tempfile.TemporaryDirectory() as tmp:
        path, record = photo_back_grid(pipe, photo, frame, results, tuned, Path(tmp) / "grid.png")
        shutil.copyfile(path, target)
    return record


def astronaut_table(record: dict, target: Path) -> str:
    """``photo_back_grid``'s distances as a Markdown table (one row per method)."""
    columns = ("projection", "male-", "male+", "sharp male-", "sharp male+")
    head = "| method | composite: projection | composite: male - | composite: male + | sharp: male - | sharp: male + |"
    lines = ["", f"The astronaut (`{target}`), dlib distance to her photo:", "", head, "|---" * 6 + "|"]
    lines += [f"| {m} | " + " | ".join(f"{d[c]:.3f}" for c in columns) + " |" for m, d in record.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=magec_cache_dir() / "photos" / "face-api-1.7.15" / "demo")
    parser.add_argument("--max-faces", type=int, default=24)
    parser.add_argument("--steps-scale", type=float, default=1.0, help="1.0: the paper's schedule")
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    parser.add_argument("--figure", type=Path, help="also draw the astronaut's paste-back grid here")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    started = time.perf_counter()
    pipe = magec.load_pipeline(device="cpu")
    faces = faces_of(args.photos, pipe.generator.resolution, args.max_faces)
    values, amount = measure(pipe, faces, args.steps_scale)
    command = f"PYTHONPATH=src OMP_NUM_THREADS=1 python docs/figures/paste_study.py --steps-scale {args.steps_scale}"
    command += f" --out {args.out}" if args.out else ""
    command += f" --figure {args.figure}" if args.figure else ""
    text = report(values, faces, amount, command, load, time.perf_counter() - started)
    if args.figure:
        record = figure(args.steps_scale, args.figure)
        text += astronaut_table(record, args.figure)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
