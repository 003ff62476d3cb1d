"""One W+ inversion step of config-f StyleGAN2 at 1024 px on this machine's GPU, every variant: the table rows
of docs/results/gpu.md's step section. Needs only torch (no magec dependencies beyond it): run with PYTHONPATH=src."""

from __future__ import annotations

import json
import sys

import torch

from magec.generators.stylegan2.bench import step_stats


def main() -> None:
    resolution = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"# torch {torch.__version__}, {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
        f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}"
    )
    variants = {
        "fused": {},
        "plain": {"fused": False},
        "bf16": {"precision": "bf16"},
        "fused+compile": {"compile": True},
        "bf16+compile": {"precision": "bf16", "compile": True},
    }
    rows = {}
    for batch in (1, 8):
        for name, options in variants.items():
            if batch == 1 and "compile" in name:  # each compilation takes about a minute: batch 8 only
                continue
            try:
                stats = step_stats(resolution, batch, device, repeats=5, **options)
            except Exception as exc:  # noqa: BLE001
                stats = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
            rows[f"batch{batch}_{name}"] = stats
            print(f"batch {batch} {name}: {json.dumps(stats)}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    # Strict IEEE fp32 convolutions (PyTorch's default lets cuDNN use TF32): the same fused step, for reference.
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        for batch in (1, 8):
            stats = step_stats(resolution, batch, device, repeats=5)
            rows[f"batch{batch}_fused_strict_fp32"] = stats
            print(f"batch {batch} fused strict-fp32: {json.dumps(stats)}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
