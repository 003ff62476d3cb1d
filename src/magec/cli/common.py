"""Options shared by several commands."""

from __future__ import annotations

import argparse


def add_device_and_seed(parser: argparse.ArgumentParser, seed: int = 0) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when present; default)")
    parser.add_argument("--seed", type=int, default=seed, help=f"seed for every random choice (default {seed})")
