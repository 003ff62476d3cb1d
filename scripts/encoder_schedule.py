"""Which schedule suits MAGEC started from an encoder? Measured on generated faces of the embedded default.

For N faces the pack never saw: full ``magec`` (the paper's 200 steps from the generator's mean), the ``encoder``
code alone, and ``encoder+magec`` at a share of the paper's steps with a few learning rates. Per method: seconds
per image, MSE and perceptual distance to the face, the MAGEC term at the final code (Eq. 2 through the pack's
LinkNet), and the edit behaviour: the mean change of F's attribute under each InterfaceGAN attribute edit
(+/- the editor's default amount), i.e. how strongly the code's edits do what they say. Prints one JSON object.

    OMP_NUM_THREADS=2 python scripts/encoder_schedule.py --encoder ENC.safetensors --faces 16 --out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", required=True, help="encoder spec for magec.encoders.loading.load_encoder")
    parser.add_argument("--faces", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lrs", default="0.01,0.02,0.04")
    parser.add_argument("--fractions", default="0.25")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--identity", default="auto")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="scale every schedule (dry runs)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import magec
    from magec.encoders.loading import load_encoder
    from magec.evaluation.target import attribute_probability
    from magec.inversion.config import ENCODER_STEPS_FRACTION, method_config
    from magec.losses.magec_loss import build_magec_loss
    from magec.losses.mse import mse_per_image

    pipe = magec.load_pipeline(device="cpu", identity=args.identity, perceptual="auto")
    gen = pipe.generator
    pipe = replace(pipe, encoder=load_encoder(args.encoder, gen, pipe.device).eval())
    with torch.no_grad():
        faces = gen.synthesize(gen.sample_latents(args.faces, args.seed))
    magec_loss = build_magec_loss(pipe.pack)
    editor = pipe.editors["interfacegan"]
    layout = pipe.describer.layout
    with torch.no_grad():
        labeller = getattr(pipe.describer, "describe_labels", None)
        descriptor = labeller(faces)[0] if labeller is not None else pipe.describer(faces)
        edited_targets = magec_loss.targets(descriptor)

    def measure(name: str, method: str, config) -> dict:
        started, latents, images = time.perf_counter(), [], []
        load = os.getloadavg()[0]
        for i in range(0, args.faces, args.batch_size):
            result = magec.invert(pipe, faces[i : i + args.batch_size], method, config, seed=0)
            latents.append(result.latents)
            images.append(result.images)
        seconds = (time.perf_counter() - started) / args.faces
        latents, images = torch.cat(latents), torch.cat(images)
        with torch.no_grad():
            mse = mse_per_image(images, faces)
            perceptual = pipe.perceptual(images, faces)
            term = magec_loss(latents.flatten(1), descriptor, edited_targets)
            effects = {}
            for attribute in layout.attribute_names:
                amount = editor.default_amount
                up = pipe.describer(gen.synthesize(editor.edit(latents, attribute, amount)))
                down = pipe.describer(gen.synthesize(editor.edit(latents, attribute, -amount)))
                # on the [0, 1] scale of the paper's improved target (age by the range of its class values)
                delta = attribute_probability(layout, up, attribute) - attribute_probability(layout, down, attribute)
                effects[attribute] = delta.tolist()
        row = {
            "name": name,
            "method": method,
            "steps": config.total_steps if config is not None else None,
            "lr": config.lr if config is not None else None,
            "seconds_per_image": round(seconds, 3),
            "load_at_start": round(load, 2),
            "load_at_end": round(os.getloadavg()[0], 2),
            "mse": mse.tolist(),
            "perceptual": perceptual.tolist(),
            "magec_term": term.tolist(),
            "edit_effect": effects,
        }
        print(
            f"{name}: {seconds:.2f} s/image (load {load:.1f}), MSE {mse.mean():.5f}, "
            f"perceptual {perceptual.mean():.4f},"
            f" MAGEC term {term.mean():.4f}, edit effect "
            + ", ".join(f"{a} {torch.tensor(v).mean():+.3f}" for a, v in effects.items()),
            flush=True,
        )
        return row

    rows = [measure("encoder", "encoder", method_config("encoder"))]
    for fraction in (float(f) for f in args.fractions.split(",")):
        base = method_config("encoder+magec", fraction / ENCODER_STEPS_FRACTION * args.steps_scale)
        for lr in (float(x) for x in args.lrs.split(",")):
            config = replace(base, lr=lr)
            rows.append(measure(f"encoder+magec {fraction:.0%} lr {lr}", "encoder+magec", config))
    rows.append(measure("magec (paper, from the mean)", "magec", method_config("magec", args.steps_scale)))
    summary = {
        "faces": args.faces,
        "seed": args.seed,
        "identity": pipe.identity.name if pipe.identity else "off",
        "perceptual": pipe.perceptual.name,
        "threads": torch.get_num_threads(),
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
