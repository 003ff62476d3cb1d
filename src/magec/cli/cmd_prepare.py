"""``magec prepare``: sample, describe and fit a pack."""

from __future__ import annotations

import argparse
import json

from magec.cli.common import add_device_and_seed
from magec.describers import EMBEDDED_DESCRIBER, load_describer
from magec.generators import EMBEDDED_GENERATOR, load_generator
from magec.prepare import PrepareConfig, prepare_pack


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="fit LinkNet, editors and latent statistics into a pack", description=__doc__)
    p.add_argument("--out", required=True, help="pack folder to write (replaced atomically)")
    p.add_argument("--generator", default=EMBEDDED_GENERATOR, help="dcgan-face (default) or stylegan2:PATH")
    p.add_argument("--describer", default=EMBEDDED_DESCRIBER, help="dlib-age-gender (default) or celeba:PATH")
    p.add_argument("--samples", type=int, default=PrepareConfig.n_samples, help=f"latent-image pairs to sample (default {PrepareConfig.n_samples})")
    p.add_argument("--batch-size", type=int, default=PrepareConfig.batch_size)
    add_device_and_seed(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    generator = load_generator(args.generator, args.device)
    describer = load_describer(args.describer, args.device)
    config = PrepareConfig(n_samples=args.samples, seed=args.seed, batch_size=args.batch_size)
    pack = prepare_pack(generator, describer, config)
    pack.save(args.out)
    print(f"wrote pack {args.out} in {pack.info['prepare']['seconds']} s")
    print("LinkNet held-out agreement with F: " + json.dumps(pack.info["linknet"]["heldout_report"]))
    return 0
