"""Measure the SeFa and StyleFlow editors on the embedded default (DCGAN + dlib F), as ``magec prepare`` would fit them.

    PYTHONPATH=src python docs/figures/new_editors_study.py --threads 2 --out docs/results/new-editors.json

1. Sample and describe ``--samples`` codes exactly as ``prepare`` does (seed 0), fit LinkNet on prepare's
   training split (same split and config, so it is the pack's LinkNet).
2. Fit StyleFlow (default config) on all samples and time it.
3. On 100 seeded codes (seed 4321): zero-change and there-and-back errors, and how often F's P(male) / age
   move the right way under +/- default edits.
4. SeFa on the DCGAN and on a small random StyleGAN2: image change of the top directions vs random unit
   directions at the same step.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from magec.describers import load_describer
from magec.generators.dcgan import DCGANFace
from magec.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from magec.io.atomic import write_json
from magec.latent.linknet import LinkNet, LinkNetConfig
from magec.latent.sefa import SeFaEditor
from magec.latent.styleflow import StyleFlowConfig, StyleFlowEditor, fit_styleflow, linknet_attributes
from magec.prepare import sample_and_describe
from magec.seeding import generator_for


def image_change(generator, latents: torch.Tensor, edited: torch.Tensor) -> float:
    return float((generator.synthesize(edited) - generator.synthesize(latents)).square().mean())


@torch.no_grad()
def sefa_vs_random(
    generator, latents: torch.Tensor, editor: SeFaEditor, amount: float, n_random: int, seed: int
) -> dict:
    tops = [image_change(generator, latents, editor.edit(latents, f"sefa{k}", amount)) for k in range(3)]
    dirs = torch.nn.functional.normalize(torch.randn(n_random, latents.shape[1], generator=generator_for(seed)), dim=1)
    rnd = torch.tensor([image_change(generator, latents, latents + amount * d) for d in dirs])
    return {
        "amount": round(amount, 4),
        "sefa0_2_mse": [round(t, 5) for t in tops],
        "random_mean": round(float(rnd.mean()), 5),
        "random_max": round(float(rnd.max()), 5),
        "n_random": n_random,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=8000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=None, help="reuse / store the sampled (latent, descriptor) pairs here (.pt)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results: dict = {"threads": args.threads, "samples": args.samples}

    dcgan = DCGANFace.from_checkpoint()
    describer = load_describer("dlib-age-gender", "cpu")
    layout = describer.layout
    cache = Path(args.cache) if args.cache else None
    if cache and cache.is_file():
        data = torch.load(cache, weights_only=True)
        latents, probs = data["latents"], data["probs"]
    else:
        latents, probs, _ = sample_and_describe(dcgan, describer, args.samples, seed=0, progress=False)
        if cache:
            torch.save({"latents": latents, "probs": probs}, cache)
    values = layout.attribute_values(probs)
    n_hold = max(1, int(round(0.2 * len(latents))))
    train = torch.randperm(len(latents), generator=generator_for(0))[n_hold:]
    linknet = LinkNet.fit(latents[train], probs[train], layout, LinkNetConfig(), progress=False)

    flow, fit_info = fit_styleflow(latents, values, layout.attribute_names, StyleFlowConfig(), seed=0)
    results["styleflow_fit"] = fit_info
    print("StyleFlow fit", fit_info, flush=True)
    editor = StyleFlowEditor(flow, linknet_attributes(linknet))
    # Exact-trace log-likelihood gain over the flow's starting point (identity: a standard normal after normalisation).
    some = torch.randperm(len(latents), generator=generator_for(1))[:200]
    exact, _, _ = flow.log_prob(latents[some], values[some])
    x = (latents[some] - flow.latent_mean) / flow.latent_std
    start = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(1) - flow.latent_std.log().sum()
    results["styleflow_fit"]["exact_loglik_gain_nats_per_code_200"] = round(float((exact.detach() - start).mean()), 4)

    with torch.no_grad():
        z = dcgan.sample_latents(100, seed=4321)
        started = time.perf_counter()
        same = editor.edit(z, "male", 0.0)
        edit_seconds = time.perf_counter() - started
        current = editor.current_attributes(z)
        target = editor.target_attributes(current, [("male", editor.default_amount)])
        back = editor.transport(editor.transport(z, current, target), target, current)
        before = layout.attribute_values(describer(dcgan.synthesize(z)))
        moves = {}
        for op in layout.attribute_names:
            k = layout.attribute_names.index(op)
            for sign in (1.0, -1.0):
                edited = editor.edit(z, op, sign * editor.default_amount)
                after = layout.attribute_values(describer(dcgan.synthesize(edited)))
                right = (after[:, k] > before[:, k]) if sign > 0 else (after[:, k] < before[:, k])
                moves[f"{op}{'+' if sign > 0 else '-'}"] = {
                    "fraction_right_way": round(float(right.float().mean()), 3),
                    "mean_change": round(float((after[:, k] - before[:, k]).mean()), 4),
                    "mean_latent_step": round(float((edited - z).norm(dim=1).mean()), 4),
                }
    results["styleflow_edits"] = {
        "default_amount_sigmas": editor.default_amount,
        "units_per_step": dict(zip(layout.attribute_names, [round(float(u), 4) for u in editor.units_per_step])),
        "zero_change_max_abs_error": float((same - z).abs().max()),
        "there_and_back_max_abs_error": float((back - z).abs().max()),
        "edit_seconds_100_codes": round(edit_seconds, 3),
        "moves": moves,
    }
    print(json.dumps(results["styleflow_edits"], indent=1), flush=True)

    with torch.no_grad():
        sefa = SeFaEditor.fit(dcgan, latents)
        results["sefa_dcgan"] = sefa_vs_random(
            dcgan, dcgan.sample_latents(32, seed=99), sefa, sefa.default_amount, 20, seed=5
        )
        tiny = StyleGAN2Generator.random(
            StyleGAN2Config(resolution=32, style_dim=32, channels=(16, 16, 8, 8)), seed=1, w_avg_samples=2000
        )
        sefa_t = SeFaEditor.fit(tiny, tiny.sample_latents(500, seed=1))
        results["sefa_tiny_stylegan2"] = sefa_vs_random(tiny, tiny.sample_latents(32, seed=99), sefa_t, 1.0, 20, seed=3)
    print(json.dumps({k: results[k] for k in ("sefa_dcgan", "sefa_tiny_stylegan2")}, indent=1))
    if args.out:
        write_json(args.out, results)


if __name__ == "__main__":
    main()
