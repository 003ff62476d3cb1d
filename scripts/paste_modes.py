"""The two paste-back modes side by side on real photos: sharpness, closeness to the photo at amount 0, identity.

For each face (scikit-image's astronaut, and the largest face of each of face-api's six demo photos, which
``scripts/fetch_face_api.sh photos`` fetches), framed with the embedded DCGAN's chip box and inverted with
magec and magec+pti (short schedules: ``--steps-scale``), the projection (amount 0) and the InterfaceGAN edits
male -/+ and smile + (the editor's default amount) are pasted back into the photo in both modes
(``magec.faces.paste.paste_edit``: ``sharp`` and ``composite``). Measured, in the face region (the landmark
mask above 0.5):

- sharpness: variance of the Laplacian of the pasted photo over that of the photo (1.0: as sharp as the photo);
- MSE to the photo at amount 0 (pixels in [0, 1]);
- dlib's identity distance (its C++ network on a crop around the face) from the photo to each pasted edit, and the
  share under dlib's same-person threshold 0.6.

Usage (prints a Markdown table; ``--out FILE`` also writes it)::

    MAGEC_CACHE=... .venv/bin/python scripts/paste_modes.py --steps-scale 0.25 --out paste-modes.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch
from PIL import Image

import magec
from magec.faces.crop import frame_face_crop
from magec.faces.paste import PASTE_MODES, face_landmarks_for, face_mask, paste_edit
from magec.faces.recognition import SAME_PERSON, FaceRecognizer
from magec.generators.base import select_noise
from magec.inversion import invert, method_config
from magec.inversion.pti import PTIConfig
from magec.io.images import pil_to_tensor, read_image, tensor_to_pil
from magec.weights import magec_cache_dir

EDITS = (("male", -1.0), ("male", 1.0), ("smile", 1.0))


def photos(folder: Path, count: int) -> list[tuple[str, Image.Image]]:
    from skimage import data

    found = [("astronaut", Image.fromarray(data.astronaut()))]
    found += [(p.stem, read_image(p)) for p in sorted(folder.glob("*.jpg"))]
    return found[:count]


def gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=magec_cache_dir() / "photos" / "face-api-1.7.15" / "demo")
    parser.add_argument("--count", type=int, default=7, help="faces (the astronaut first)")
    parser.add_argument("--steps-scale", type=float, default=0.25)
    parser.add_argument("--methods", nargs="+", default=["magec", "magec+pti"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.perf_counter()
    pipe = magec.load_pipeline(device="cpu", identity="none")  # as `magec demo`: the identity loss off
    size = pipe.generator.resolution
    recognizer = FaceRecognizer()
    editor = pipe.pack.interfacegan
    faces = []
    for name, photo in photos(args.photos, args.count):
        crop, frame = frame_face_crop(photo, size)
        landmarks = face_landmarks_for(photo, frame)
        mask = face_mask(photo.size, landmarks)
        corners = frame.square_corners()
        (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
        pad = 0.3 * (x1 - x0)
        box = (max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, photo.width), min(y1 + pad, photo.height))
        box = tuple(int(v) for v in box)
        faces.append((name, photo, crop, frame, landmarks, mask, box))
    inputs = torch.cat([pil_to_tensor(f[2]) for f in faces])
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    for method in args.methods:
        config = method_config(method, args.steps_scale)
        pti = PTIConfig().scaled(args.steps_scale)
        res = invert(pipe, inputs, method, config, seed=0, pti=pti)
        for i, (_, photo, _, frame, landmarks, mask, box) in enumerate(faces):
            generator = res.tuned[i] if res.tuned else pipe.generator
            z = res.latents[i : i + 1]
            noise = select_noise(res.noise, i)
            with torch.no_grad():
                codes = [z, *(editor.edit(z, op, sign * editor.default_amount) for op, sign in EDITS)]
                base, *edited = (tensor_to_pil(generator.synthesize(c, space=res.space, noise=noise)[0]) for c in codes)
            face = mask > 0.5
            reference = float(scipy.ndimage.laplace(gray(photo))[face].var())
            crop_photo = photo.crop(box)
            for mode in PASTE_MODES:
                row = rows.setdefault((method, mode), {"sharpness": [], "mse0": [], "id": [], "id_projection": []})
                rest = paste_edit(photo, base, base, frame, landmarks, mask, mode)
                diff = (np.asarray(rest, dtype=np.float64) - np.asarray(photo.convert("RGB"), dtype=np.float64)) / 255
                row["mse0"].append(float((diff[face] ** 2).mean()))
                row["id_projection"].append(recognizer.distance(crop_photo, rest.crop(box)))
                for square in edited:
                    pasted = paste_edit(photo, square, base, frame, landmarks, mask, mode)
                    row["sharpness"].append(float(scipy.ndimage.laplace(gray(pasted))[face].var()) / reference)
                    row["id"].append(recognizer.distance(crop_photo, pasted.crop(box)))
    lines = [
        f"{len(faces)} faces ({', '.join(f[0] for f in faces)}), `--steps-scale {args.steps_scale}`, identity loss "
        f"off, InterfaceGAN male -/+ and smile + at the default amount ({editor.default_amount:.2f}); "
        f"{time.perf_counter() - started:.0f} s on this machine.",
        "",
        "| method | paste mode | sharpness at the edits (Laplacian variance / photo's) | MSE to the photo at amount 0 "
        "| dlib distance, amount 0 | dlib distance after edits | same person after edits |",
        "|---|---|---|---|---|---|---|",
    ]
    for (method, mode), row in rows.items():
        ids = np.array(row["id"])
        ok = ids[~np.isnan(ids)]
        lines.append(
            f"| {method} | {mode} | {np.mean(row['sharpness']):.2f} (min {np.min(row['sharpness']):.2f}) "
            f"| {np.mean(row['mse0']):.5f} | {np.nanmean(row['id_projection']):.3f} | {np.mean(ok):.3f} "
            f"| {np.mean(ok < SAME_PERSON):.0%} ({len(ok)} of {len(ids)} found) |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
