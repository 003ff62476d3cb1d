"""Measure magec's torch port of face-api's nets: max |torch - TF.js| per net, CPU time, astronaut predictions.

Run (needs `make face-api` and node + npm; the TF.js reference env is the one tests/test_face_api.py installs):
    OMP_NUM_THREADS=1 PYTHONPATH=src python docs/figures/face_api_measure.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    import test_face_api as t  # reuse the test's reference runner and astronaut crop
    from magec.describers.face_api import EXPRESSIONS, AgeGenderNet, FaceExpressionNet, face_api_dir, face_api_input

    torch.set_num_threads(1)
    root = face_api_dir()
    expr, ag = FaceExpressionNet.from_weights(root), AgeGenderNet.from_weights(root)
    node_modules = t.JS_CACHE / "node_modules"
    g = torch.Generator().manual_seed(2024)
    faces = [t.astronaut_crop()] + [torch.rand(3, 112, 112, generator=g) * 255 for _ in range(8)]
    faces += [torch.rand(3, 80 + 7 * i, 140 - 5 * i, generator=g) * 255 for i in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        ref = t.reference(node_modules, root, faces, Path(tmp), batch=True)
    with torch.no_grad():
        x = expr.normalise(face_api_input(faces))
        p = expr.forward_input(x)
        age, gender = ag.forward_input(x)
    out = {
        "inputs": len(faces),
        "max_abs_diff": {
            "expression_probs": (p - torch.tensor(ref["expression"])).abs().max().item(),
            "gender_probs": (gender - torch.tensor(ref["gender"])).abs().max().item(),
            "age_years": (age - torch.tensor(ref["age"])).abs().max().item(),
        },
        "astronaut": {
            "expression": dict(zip(EXPRESSIONS, [round(v, 4) for v in p[0].tolist()])),
            "p_female": round(gender[0, 1].item(), 4),
            "age": round(age[0].item(), 2),
        },
        "cpu_threads": torch.get_num_threads(),
        "forward_ms": {},
    }
    for b in (1, 8):
        xb = x[:1].expand(b, -1, -1, -1).contiguous()
        for name, fn in (("expression", expr.forward_input), ("age_gender", ag.forward_input)):
            with torch.no_grad():
                for _ in range(3):
                    fn(xb)
                times = []
                for _ in range(20):
                    t0 = time.perf_counter()
                    fn(xb)
                    times.append(time.perf_counter() - t0)
            out["forward_ms"][f"{name}_batch{b}"] = round(1000 * sorted(times)[len(times) // 2], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
