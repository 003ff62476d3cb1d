"""Which gender/age network should the ``faces`` describer use: dlib's or face-api's? (needs dlib-bin, face-api files)

    npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz   # its demo/ photos
    PYTHONPATH=src python docs/figures/faces_describer_study.py --demo package/demo --sheet /tmp/faces.png

Real photos: skimage's astronaut and face-api's demo/sample1-6.jpg; every face dlib finds (HOG, upsampled
once), cut as dlib's aligned chip (5 landmarks, padding 0.2) and given to both networks (dlib: 32 / 64 px
chips, face-api: the 112 px chip). Generated faces: the embedded DCGAN, seed 4242, 60 faces; the ones whose
gender is obvious by eye are listed in OBVIOUS (labelled by looking at ``--sheet``), each network on the fixed
box and on the aligned chip. Prints the per-face numbers and the agreement counts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import dlib
import numpy as np
import torch
from PIL import Image

from magec.describers.face_api import AgeGenderNet
from magec.describers.faces import CHIP_PADDING, FaceDescriber
from magec.generators import load_generator
from magec.weights import age_gender_models_dir

#: DCGAN faces (seed 4242, indices 0..59) whose gender is obvious by eye: True = male.
OBVIOUS = {9: True, 13: True, 14: True, 28: True, 32: True, 38: True, 44: True, 52: True}
OBVIOUS |= {6: False, 17: False, 24: False, 31: False, 54: False}


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 127.5 - 1


def real_photos(demo: Path | None) -> list[tuple[str, np.ndarray]]:
    from skimage import data

    photos = [("astronaut", data.astronaut())]
    if demo is not None:
        photos += [(p.stem, np.asarray(Image.open(p).convert("RGB"))) for p in sorted(demo.glob("sample*.jpg"))]
    return photos


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, help="face-api's demo/ folder (sample1-6.jpg)")
    ap.add_argument("--sheet", help="save the real-photo chips as a numbered contact sheet")
    args = ap.parse_args()
    torch.set_num_threads(1)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(age_gender_models_dir() / "shape_predictor_5_face_landmarks.dat"))
    faces = FaceDescriber("dcgan")
    age_gender = AgeGenderNet.from_weights(chip=faces.chip)
    ages = torch.tensor(faces.dlib.layout.head("age").class_values)

    def both(c32: np.ndarray, c64: np.ndarray, c112: np.ndarray) -> tuple[float, float, float, float]:
        g = faces.dlib.gender_net(faces.dlib._normalise(to_tensor(c32), faces.dlib.gender_input))[0, 1]
        a = (faces.dlib.age_net(faces.dlib._normalise(to_tensor(c64), faces.dlib.age_input))[0] * ages).sum()
        fa_age, fa_g = age_gender.forward_input(age_gender.normalise((to_tensor(c112) + 1) * 127.5))
        return float(g), float(a), float(fa_g[0, 0]), float(fa_age[0])

    print("real photos: every face dlib finds, aligned chip (P(male), age) for dlib | face-api")
    chips = []
    for name, image in real_photos(args.demo):
        for box in detector(image, 1):
            shape = predictor(image, box)
            c = {
                s: dlib.extract_image_chip(image, dlib.get_face_chip_details(shape, s, CHIP_PADDING))
                for s in (32, 64, 112)
            }
            chips.append(c[112])
            print(f"{len(chips) - 1:3d} {name:10s} dlib %.2f %5.1f | face-api %.2f %5.1f" % both(c[32], c[64], c[112]))
    if args.sheet:
        cols = 10
        sheet = Image.new("RGB", (cols * 112, -(-len(chips) // cols) * 112), "white")
        for k, c in enumerate(chips):
            sheet.paste(Image.fromarray(c), ((k % cols) * 112, (k // cols) * 112))
        sheet.save(args.sheet)

    generator = load_generator("dcgan-face", "cpu")
    images = generator.synthesize(generator.sample_latents(60, 4242))
    found, aligned = faces.aligned_chips(images)
    where = {i: k for k, i in enumerate(found)}
    fixed = faces.layout.attribute_values(faces(images))
    fa_age, fa_g = age_gender(images)
    hits = {"dlib fixed": 0, "face-api fixed": 0, "dlib aligned": 0, "face-api aligned": 0}
    print("\nDCGAN faces of obvious gender (seed 4242): P(male), age; fixed box | aligned chip")
    for i, male in sorted(OBVIOUS.items()):
        k = where[i]
        al = both(*(aligned[s][k].permute(1, 2, 0).add(1).mul(127.5).round().byte().numpy() for s in (32, 64, 112)))
        row = (float(fixed[i, 0]), float(fixed[i, 1]), float(fa_g[i, 0]), float(fa_age[i]), *al)
        for name, p in zip(hits, (row[0], row[2], row[4], row[6])):
            hits[name] += (p > 0.5) == male
        print(
            f"{i:3d} {'male  ' if male else 'female'} dlib %.2f %4.1f face-api %.2f %4.1f | dlib %.2f %4.1f face-api %.2f %4.1f"
            % row
        )
    print({name: f"{n}/{len(OBVIOUS)}" for name, n in hits.items()})


if __name__ == "__main__":
    main()
