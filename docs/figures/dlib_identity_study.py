"""Measure the dlib identity loss (magec.losses.dlib_recognition): fidelity, speed, detection rate, loss scale.

    PYTHONPATH=src OMP_NUM_THREADS=1 python docs/figures/dlib_identity_study.py [--lambdas 0,3e-4,0.3,1,3] [--dcgan 64]

1. torch descriptor vs dlib's C++ ``compute_face_descriptor`` on dlib's own chips of real photos (skimage's
   astronaut, mirrored and cropped; Grace Hopper from matplotlib's sample data): max abs difference.
2. forward+backward time of the loss on 64 x 64 images, CPU, 1 thread (targets cached), batch 1 and 4.
3. how often dlib's detector finds the face of an embedded-DCGAN sample (64 px, upscaled to 256): the rest
   use the fixed fallback chip.
4. two real faces (the astronaut and Grace Hopper, framed by --face-crop, 64 px) inverted together with the
   paper's MAGEC schedule for each lambda_ID in ``--lambdas``: the loss terms at the first and last step, the
   final identity distance, and the latent-gradient norm of each unweighted term at the start code.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path

import dlib
import numpy as np
import torch
from PIL import Image
from skimage import data


def _photos() -> dict[str, np.ndarray]:
    mpl = Path(next(iter(importlib.util.find_spec("matplotlib").submodule_search_locations)))
    astro = data.astronaut()
    return {
        "astronaut": astro,
        "astronaut-flipped": np.ascontiguousarray(astro[:, ::-1]),
        "astronaut-cropped": np.ascontiguousarray(astro[30:260, 120:330]),
        "hopper": np.asarray(Image.open(mpl / "mpl-data/sample_data/grace_hopper.jpg").convert("RGB")),
    }


def real_chips() -> dict[str, np.ndarray]:
    from magec.weights import landmarks5_file_path

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(landmarks5_file_path()))
    chips = {}
    for name, img in _photos().items():
        face = max(detector(img, 1), key=lambda r: r.area())
        chips[name] = dlib.get_face_chip(img, predictor(img, face), size=150, padding=0.25)
    return chips


def fidelity() -> None:
    from magec.losses.dlib_recognition import DlibFaceRecognizer
    from magec.weights import recognition_file_path

    net = DlibFaceRecognizer.from_file()
    recognizer = dlib.face_recognition_model_v1(str(recognition_file_path()))
    for name, chip in real_chips().items():
        ref = np.array(recognizer.compute_face_descriptor(chip))
        with torch.no_grad():
            ours = net(torch.from_numpy(chip).permute(2, 0, 1)[None].float())[0].numpy()
        diff = np.abs(ours - ref).max()
        print(f"fidelity {name}: max |torch - dlib| = {diff:.2e}  (|descriptor| = {np.linalg.norm(ref):.3f})")


def speed(loss) -> None:
    from magec.faces.crop import astronaut_face
    from magec.io.images import pil_to_tensor

    target1 = pil_to_tensor(astronaut_face(64))
    for b in (1, 4):
        targets = torch.cat([target1 * (1 - 0.01 * i) for i in range(b)])
        g = torch.Generator().manual_seed(b)
        x = (targets + 0.1 * torch.randn(targets.shape, generator=g)).clamp(-1, 1).requires_grad_(True)
        t = time.perf_counter()
        loss(x, targets).sum().backward()
        first = time.perf_counter() - t
        times = []
        for i in range(23):
            x.grad = None
            t = time.perf_counter()
            loss(x, targets).sum().backward()
            if i >= 3:
                times.append(time.perf_counter() - t)
        print(
            f"speed batch {b}: first call {first * 1e3:.0f} ms (detect + describe targets), then forward+backward "
            f"median {statistics.median(times) * 1e3:.1f} ms (min {min(times) * 1e3:.1f})"
        )


def detection_rate(loss, n: int) -> None:
    from magec.generators.dcgan import DCGANFace
    from magec.losses.dlib_recognition import to_uint8_hwc as to_uint8

    gen = DCGANFace.from_checkpoint()
    with torch.no_grad():
        images = gen.synthesize(gen.sample_latents(n, seed=7))
    found = sum(loss.finder.find(to_uint8(img)) is not None for img in images)
    print(f"detection: dlib found a face in {found}/{n} embedded-DCGAN samples (seed 7); the rest use the fallback")


def scale(lambdas: list[float]) -> None:
    from magec.describers import load_describer
    from magec.faces.crop import astronaut_face, crop_to_chip_box
    from magec.generators.dcgan import DCGANFace
    from magec.inversion.config import method_config
    from magec.inversion.optimizer import invert
    from magec.io.images import pil_to_tensor
    from magec.losses.magec_loss import MagecLoss
    from magec.losses.mse import mse_per_image
    from magec.pipeline import assemble_pipeline
    from magec.prepare import PrepareConfig, prepare_pack

    gen, desc = DCGANFace.from_checkpoint(), load_describer("dlib-age-gender", "cpu")
    pack = prepare_pack(gen, desc, PrepareConfig(n_samples=1500, ganspace_samples=600))
    pipe = assemble_pipeline(gen, desc, pack, identity="dlib", device="cpu")
    print(f"scale: perceptual loss = {pipe.perceptual.name if hasattr(pipe.perceptual, 'name') else pipe.perceptual}")
    hopper = Image.fromarray(_photos()["hopper"])
    target = torch.cat([pil_to_tensor(astronaut_face(64)), pil_to_tensor(crop_to_chip_box(hopper, 64))])
    terms = ("mse", "perceptual", "identity", "magec")
    for lam in lambdas:
        t = time.perf_counter()
        res = invert(pipe, target, "magec", method_config("magec", lambda_id=lam), seed=0)
        first, last = res.history[0], res.history[-1]
        with torch.no_grad():
            ids = [round(v, 3) for v in pipe.identity(res.images, target).tolist()]
            mses = [round(v, 4) for v in mse_per_image(res.images, target).tolist()]
        print(
            f"scale lambda_ID={lam:g} [astronaut, hopper]: step 1 "
            + json.dumps({k: [round(v, 4) for v in first[k]] for k in terms if k in first})
            + " last step "
            + json.dumps({k: [round(v, 4) for v in last[k]] for k in terms if k in last})
            + f" final ID {ids} MSE {mses} ({time.perf_counter() - t:.0f} s)"
        )
    magec = MagecLoss(pack.linknet, pack.interfacegan, None, None)
    with torch.no_grad():
        descriptor = desc(target)
        edited = magec.targets(descriptor)
    norms = {}
    for term in terms:
        z = gen.initial_latent()[None].repeat(2, 1).requires_grad_(True)
        img = gen.synthesize(z, space=gen.editing_space.name)
        value = {
            "mse": lambda: mse_per_image(img, target),
            "perceptual": lambda: pipe.perceptual(img, target),
            "identity": lambda: pipe.identity(img, target),
            "magec": lambda: magec(z.flatten(1), descriptor, edited),
        }[term]()
        value[0].backward()
        norms[term] = round(z.grad.norm().item(), 4)
    print("scale: |d term / d z| for the astronaut at the start code (unweighted): " + json.dumps(norms))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lambdas", default="0,3e-4,0.3,1,3")
    ap.add_argument("--dcgan", type=int, default=64, help="DCGAN samples for the detection rate")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from magec.losses.specs import build_identity

    fidelity()
    loss = build_identity("dlib")
    speed(loss)
    detection_rate(loss, args.dcgan)
    scale([float(v) for v in args.lambdas.split(",")])


if __name__ == "__main__":
    main()
