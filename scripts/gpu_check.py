"""The whole magec chain at one resolution with random weights: seconds and peak memory of every step, as one table.

Run by ``scripts/gpu_check.sh`` on a CUDA machine (the paper's setup: StyleGAN2 config-f at 1024 px), and by the
test suite on a CPU at a small resolution (``--quick``). Nothing is downloaded and no optional package is needed:

- the generator is ``StyleGAN2Generator.random(StyleGAN2Config(resolution=R))`` written as magec safetensors
  (what ``magec convert`` writes); a W+ step costs the same with random weights as with trained ones;
- F is a small ONNX network with random weights (a convolution, pooling, a linear map) read through
  ``--describer onnx:F.onnx:F.json`` with two continuous attributes (always both sides of InterfaceGAN's split),
  and its activations are the perceptual loss (``--perceptual describer-features``); ``--identity none``;
- the photo is scikit-image's astronaut; ``--align`` (and so ``--paste-back`` and the studio's paste) needs
  dlib and is skipped with a note without it. The inversion targets are generated faces.

Every command runs as a child process (``python -c`` around ``magec.cli.main``) so that its figures are its own:
wall seconds, peak RSS (``os.wait4``'s ``ru_maxrss``) and, on CUDA, ``torch.cuda.max_memory_allocated`` written
by an ``atexit`` hook of the child. Output: the markdown table on stdout, ``--out DIR/gpu.md`` and ``gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("magec", "no-magec", "im2stylegan++", "magec+pti")
EDITORS = ("interfacegan", "ganspace", "sefa", "styleflow", "interpolate")

#: Runs a magec command (argv[2:]) and writes the child's CUDA peak to argv[1] when it exits.
CHILD = r"""
import atexit, json, sys
path = sys.argv[1]
sys.argv = ["magec", *sys.argv[2:]]
def _dump():
    torch = sys.modules.get("torch")
    peak = None
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak = max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count()))
    with open(path, "w") as f:
        json.dump({"gpu_peak_bytes": peak}, f)
atexit.register(_dump)
from magec.cli.main import main
sys.exit(main())
"""

#: One W+ inversion step (forward + MSE + backward) at a batch: ``step_stats`` when the library has it.
STEP = r"""
import json, sys
from magec.generators.stylegan2.bench import step_stats
out, resolution, batch, device, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
flags = set(sys.argv[6:])
stats = step_stats(resolution, batch, device, repeats=repeats, precision="bf16" if "bf16" in flags else "fp32",
                   compile="compile" in flags, fused="plain" not in flags)
figures = {"ms": stats["ms"], "gpu_peak_bytes": stats["peak_bytes"], "saved_bytes": stats["saved_bytes"]}
json.dump(figures, open(out, "w"))
"""

#: The studio's slider: render_latent with one edit, then (with a framing) the paste into the photo.
SLIDER = r"""
import json, statistics, sys, time
import torch
from magec.pipeline import load_pipeline
from magec.inversion.outputs import load_latent
from magec.render import render_latent
out, pack, latent_path, photo, device = sys.argv[1:6]
repeats = int(sys.argv[6])
pipe = load_pipeline(pack, device=device, perceptual="describer-features", identity="none")
saved = load_latent(latent_path)
editor = pipe.pack.editors["interfacegan"]
op = editor.operations()[0]
paste = None
record = saved.metadata.get("photo") if photo else None
if record:
    from magec.faces.frame import FaceFrame
    from magec.faces.paste import face_landmarks_for, face_mask, paste_back
    from magec.io.images import read_image, tensor_to_pil
    full = read_image(photo, 10**9)
    fr = FaceFrame.from_dict(record)
    landmarks = face_landmarks_for(full, fr)
    mask = face_mask(full.size, landmarks)
    paste = lambda img: paste_back(full, tensor_to_pil(img[0]), fr, landmarks, mask)
times = []
with torch.no_grad():
    for k in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        img = render_latent(pipe, saved.latent, saved.space, saved.noise, {("interfacegan", op): 0.5 * (k % 3)})
        img = img.cpu()
        if paste is not None:
            paste(img)
        times.append(time.perf_counter() - t)
peak = None
if device.startswith("cuda"):
    peak = torch.cuda.max_memory_allocated()
result = {"ms": 1000 * statistics.median(times[1:]), "gpu_peak_bytes": peak, "pasted": paste is not None}
json.dump(result, open(out, "w"))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    env.setdefault("MAGEC_CACHE", str(Path(tempfile.gettempdir()) / "magec-gpu-check-cache"))
    return env


def run_child(argv: list[str], log: Path, timeout: float | None = None) -> dict:
    """Run ``python argv`` with its own figures: rc, wall seconds, peak RSS (bytes), child's JSON if it wrote one."""
    peak_file = log.with_suffix(".peak.json")
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT, env=_env())
        timer = threading.Timer(timeout, proc.kill) if timeout is not None and timeout != float("inf") else None
        if timer is not None:
            timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timed_out = timer is not None and not timer.is_alive() and status != 0
        if timer is not None:
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    extra = {}
    if peak_file.is_file():
        extra = json.loads(peak_file.read_text())
    return {
        "rc": proc.returncode,
        "seconds": seconds,
        "rss_bytes": rss,
        **extra,
        "log": str(log),
        "timed_out": timed_out,
    }


def magec(args: list[str], log: Path, timeout: float | None = None) -> dict:
    return run_child(["-c", CHILD, str(log.with_suffix(".peak.json")), *args], log, timeout)


def script(code: str, args: list[str], log: Path) -> dict:
    """An in-library measurement child; it writes its own JSON (ms, gpu peak) to ``log``'s .peak.json."""
    return run_child(["-c", code, str(log.with_suffix(".peak.json")), *args], log)


def build_inputs(work: Path, resolution: int) -> dict[str, Path]:
    """Generator, ONNX describer + layout, target faces and the astronaut photo, written into ``work``."""
    import numpy as np
    import torch
    from PIL import Image
    from torch import nn

    from magec.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator
    from magec.generators.stylegan2.loaders import save_safetensors
    from magec.io.images import tensor_to_pil

    work.mkdir(parents=True, exist_ok=True)
    gen = StyleGAN2Generator.random(StyleGAN2Config(resolution=resolution), seed=0)
    gen.set_w_avg(gen.sample_latents(1000, seed=1).mean(0))
    save_safetensors(gen, work / "g.safetensors")

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(4), nn.Flatten(), nn.Linear(8 * 8 * 8, 14)
    ).eval()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, 3, 32, 32),), str(work / "f.onnx"), dynamo=False)
    layout = {
        "format": "magec-describer-layout",
        "version": 1,
        "input": {"size": [32, 32], "crop": [0.0, 0.0, 1.0, 1.0], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "output": "logits",
        "heads": [
            {"name": "tone", "kind": "continuous", "class_values": [0, 1, 2, 3, 4, 5, 6]},
            {"name": "warmth", "kind": "continuous", "class_values": [0, 1, 2, 3, 4, 5, 6]},
        ],
    }
    (work / "f.json").write_text(json.dumps(layout))

    faces = work / "faces"
    faces.mkdir(exist_ok=True)
    with torch.no_grad():
        for k in range(8):
            tensor_to_pil(gen.synthesize(gen.sample_latents(1, seed=100 + k))[0]).save(faces / f"face{k}.png")
    from skimage import data

    Image.fromarray(np.asarray(data.astronaut())).save(work / "astronaut.png")
    return {"generator": work / "g.safetensors", "describer": work / "f.onnx", "layout": work / "f.json"}


def has_dlib() -> bool:
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    return True


def gb(n: float | None) -> str:
    return "" if n is None else f"{n / 1e9:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (default)")
    p.add_argument("--resolution", type=int, default=1024)
    p.add_argument("--quick", action="store_true", help="tiny sample counts and schedules (a check that all runs)")
    p.add_argument("--precision", default="fp32", help="passed to commands that know --precision (else ignored)")
    p.add_argument("--out", default="gpu-check", help="folder for gpu.md, gpu.json and the logs")
    p.add_argument(
        "--paper-samples", type=int, default=None, help="prepare's paper N (default 50000; quick 60; 0 skips)"
    )
    p.add_argument("--small-samples", type=int, default=None, help="prepare's small N (default 1000; quick 50)")
    p.add_argument(
        "--slider-samples", type=int, default=None, help="prepare's --slider-samples (default 12; quick 0: skipped)"
    )
    p.add_argument("--batches", default=None, help="inversion batches, comma-separated (default 1,8; quick 1,2)")
    p.add_argument("--steps-scale", type=float, default=None, help="magec's schedule scale (default 1; quick 0.01)")
    p.add_argument("--i2s-steps-scale", type=float, default=None, help="Image2StyleGAN++'s (default 0.25; quick 0.001)")
    p.add_argument("--no-edits", dest="edits", action="store_false", help="skip the edit rows")
    p.add_argument("--methods", default=",".join(METHODS), help="methods to invert with (comma-separated)")
    p.add_argument(
        "--method-batches", default=None, help="per method, e.g. 'magec+pti:1,im2stylegan++:1' (else --batches)"
    )
    p.add_argument(
        "--compare-precision",
        default=None,
        help="also invert with magec at the largest batch in this precision (e.g. bf16) and report the MSE it costs",
    )
    p.add_argument(
        "--budget-s", type=float, default=None, help="skip the steps that would start after this many seconds"
    )
    args = p.parse_args(argv)
    started = time.perf_counter()

    sys.path.insert(0, str(ROOT / "src"))
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    quick = args.quick
    paper_n = args.paper_samples if args.paper_samples is not None else (60 if quick else 50000)
    small_n = args.small_samples if args.small_samples is not None else (50 if quick else 1000)
    slider_n = args.slider_samples if args.slider_samples is not None else (0 if quick else 12)
    sliders = ["--slider-samples", str(slider_n)]
    batches = [int(b) for b in (args.batches or ("1,2" if quick else "1,8")).split(",")]
    scale = args.steps_scale if args.steps_scale is not None else (0.01 if quick else 1.0)
    i2s_scale = args.i2s_steps_scale if args.i2s_steps_scale is not None else (0.001 if quick else 0.25)
    repeats = 1 if quick else 3
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    logs = out / "logs"
    logs.mkdir(exist_ok=True)

    help_text = subprocess.run(
        [sys.executable, "-m", "magec", "invert", "--help"], capture_output=True, text=True, env=_env()
    ).stdout
    precision = ["--precision", args.precision] if "--precision" in help_text else []
    notes = []
    if args.precision != "fp32" and not precision:
        notes.append(f"--precision {args.precision} ignored: this magec has no --precision option")

    t = time.perf_counter()
    files = build_inputs(work, args.resolution)
    notes.append(f"inputs written in {time.perf_counter() - t:.0f} s (not in the table)")
    common = ["--device", device, "--seed", "0"]
    describer = f"onnx:{files['describer']}:{files['layout']}"
    losses = ["--perceptual", "describer-features", "--identity", "none"]
    rows: list[dict] = []

    header = (
        f"magec chain at {args.resolution} px on {device}"
        + (f" ({torch.cuda.get_device_name(torch.device(device))})" if device.startswith("cuda") else "")
        + f", random weights, precision {args.precision}{', --quick' if quick else ''}; "
        f"python {platform.python_version()}, torch {torch.__version__}"
    )

    def write_table() -> str:
        """The table so far (written after every row, so a run cut short still leaves its figures)."""
        lines = [
            header,
            "",
            "| step | images | seconds | s/image | GPU peak GB | peak RSS GB | note |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in rows:
            ok = row.get("rc") == 0
            secs = row.get("seconds", 0.0)
            lines.append(
                f"| {row['step']} | {row['images']} | {secs:.1f} | {secs / max(1, row['images']):.2f} | "
                f"{gb(row.get('gpu_peak_bytes'))} | {gb(row.get('rss_bytes'))} | "
                f"{row['note'] if ok else 'FAILED: ' + str(row.get('log'))} |"
            )
        lines += [""] + [f"- {n}" for n in notes]
        table = "\n".join(lines) + "\n"
        (out / "gpu.md").write_text(table)
        (out / "gpu.json").write_text(json.dumps({"header": header, "rows": rows, "notes": notes}, indent=1))
        return table

    def in_budget(name: str) -> bool:
        if args.budget_s is None or time.perf_counter() - started < args.budget_s:
            return True
        notes.append(f"skipped (time budget of {args.budget_s:.0f} s spent): {name}")
        write_table()
        return False

    def add(name: str, result: dict, images: int = 1, note: str = "") -> dict:
        row = {"step": name, "images": images, **result, "note": note}
        rows.append(row)
        write_table()
        status = "ok" if result.get("rc") == 0 else f"FAILED rc={result.get('rc')} (see {result.get('log')})"
        print(
            f"{name}: {result.get('seconds', 0):.1f} s, RSS {gb(result.get('rss_bytes'))} GB {status}", file=sys.stderr
        )
        return row

    def left() -> float:
        return float("inf") if args.budget_s is None else args.budget_s - (time.perf_counter() - started)

    faces = sorted((work / "faces").glob("*.png"))
    largest = max(batches)
    for b in batches:  # one W+ step: what magec runs, the plain layers it replaced, bf16 (and compiled, on CUDA)
        variants = {"fused": []}
        if b == largest:  # the plain layers (what magec ran before), at the batch the targets name
            variants["plain"] = ["plain"]
            if device.startswith("cuda"):  # bf16 is a GPU path: on a CPU one bf16 step takes seconds
                variants |= {"bf16": ["bf16"], "bf16+compile": ["bf16", "compile"]}
        for name, flags in variants.items():
            if not in_budget(f"step batch {b} {name}"):
                continue
            r = script(
                STEP, [str(args.resolution), str(b), device, str(repeats), *flags], logs / f"step-{b}-{name}.log"
            )
            ms = r.get("ms", float("nan"))
            add(
                f"one W+ step, batch {b}, {name}", r, b, f"{ms:.1f} ms; kept for backward {gb(r.get('saved_bytes'))} GB"
            )

    def prepare(samples: int, out: Path, log: str, *extra: str, timeout: float | None = None) -> dict:
        """``magec prepare`` of the random StyleGAN2 with the chain's describer, slider and device options."""
        args = ["prepare", "--generator", f"stylegan2:{files['generator']}", "--describer", describer]
        args += ["--samples", str(samples), "--out", str(out), "--force", "--no-encoder", *extra, *sliders, *common]
        return magec(args, logs / log, timeout=timeout)

    pack = work / "pack"
    if in_budget("prepare (small)"):
        r = prepare(small_n, pack, "prepare-small.log")
        add(f"prepare --samples {small_n}", r, small_n, "StyleFlow included")

    per_method: dict[tuple[str, int], float] = {}
    method_batches: dict[str, list[int]] = {}
    for item in filter(None, (args.method_batches or "").split(",")):
        name, _, b = item.rpartition(":")
        method_batches.setdefault(name, []).append(int(b))
    runs = [(m, b, args.precision) for m in args.methods.split(",") for b in method_batches.get(m, batches)]
    if args.compare_precision:
        runs.insert(2, ("magec", largest, args.compare_precision))
    finals: dict[tuple[str, int, str], list[float]] = {}
    for method, b, prec in runs:
        s = i2s_scale if method == "im2stylegan++" else scale
        tag = f"invert {method}, batch {b}" + (f", {prec}" if prec != args.precision else "")
        if not in_budget(tag):
            continue
        inv = work / f"inv-{method}-{b}-{prec}"
        how = ["--precision", prec] if precision else []
        r = magec(
            [
                "invert",
                *map(str, faces[:b]),
                "--pack",
                str(pack),
                "--method",
                method,
                "--out",
                str(inv),
                "--batch-size",
                str(b),
                "--steps-scale",
                str(s),
                "--force",
                *losses,
                *how,
                *common,
            ],
            logs / f"invert-{method}-{b}-{prec}.log",
        )
        per_image = None
        if r["rc"] == 0:
            metas = [json.loads((inv / f"{f.stem}.json").read_text()) for f in faces[:b]]
            per_image = metas[0].get("seconds_per_image")
            finals[(method, b, prec)] = [m["final"]["mse"] for m in metas]
            if prec == args.precision:
                per_method[(method, b)] = per_image
        note = f"{per_image} s/image in the optimiser; --steps-scale {s}"
        if (method, b, prec) in finals and (method, b, args.precision) in finals and prec != args.precision:
            ours, ref = finals[(method, b, prec)], finals[(method, b, args.precision)]
            note += f"; final MSE {sum(ours) / len(ours):.5f} vs {sum(ref) / len(ref):.5f} in {args.precision}"
        add(tag, r, b, note)
    for b in batches:
        if (method := ("magec+pti", b)) in per_method and ("magec", b) in per_method:
            pti = per_method[method] - per_method[("magec", b)]
            rows.append(
                {
                    "step": f"PTI, batch {b}",
                    "images": b,
                    "rc": 0,
                    "seconds": pti * b,
                    "note": f"{pti:.2f} s/image: magec+pti minus magec (same batch, same schedule)",
                }
            )

    if paper_n and in_budget(f"prepare --samples {paper_n}"):  # after the inversions: it may stop at the budget
        r = prepare(paper_n, work / "pack-paper", "prepare-paper.log", "--no-styleflow", timeout=left())
        note = "without StyleFlow (the small prepare above fits it)"
        if r.get("timed_out"):
            note += f"; STOPPED at the time budget after {r['seconds']:.0f} s (its log shows how far it got)"
        add(f"prepare --samples {paper_n}", r, paper_n, note)

    latent = work / f"inv-magec-{batches[0]}-{args.precision}" / f"{faces[0].stem}.latent.safetensors"
    photo = ""
    if not has_dlib():
        notes.append("dlib is not installed: --align, --paste-back and the studio's paste were skipped")
    elif in_budget("invert --align"):
        aligned = work / "inv-aligned"
        r = magec(
            [
                "invert",
                str(work / "astronaut.png"),
                "--align",
                "--pack",
                str(pack),
                "--method",
                "magec",
                "--out",
                str(aligned),
                "--steps-scale",
                str(scale),
                "--force",
                *losses,
                *precision,
                *common,
            ],
            logs / "invert-align.log",
        )
        add("invert magec --align (astronaut)", r)
        if r["rc"] == 0:
            latent, photo = aligned / "astronaut.latent.safetensors", str(work / "astronaut.png")

    operations = {"interfacegan": "tone", "ganspace": "pc0", "sefa": "sefa0", "styleflow": "tone"}
    for editor in EDITORS if args.edits else ():
        if not in_budget(f"edit {editor}"):
            continue
        paste = ["--paste-back", photo] if photo else []
        what = ["--operation", "sample:1", "--amounts=0.5,1"] if editor == "interpolate" else ["--amounts=-1,1"]
        if editor in operations:
            what += ["--operation", operations[editor]]
        r = magec(
            [
                "edit",
                str(latent),
                "--pack",
                str(pack),
                "--editor",
                editor,
                *what,
                "--out",
                str(work / f"edit-{editor}"),
                "--force",
                *paste,
                *common[:2],
            ],
            logs / f"edit-{editor}.log",
        )
        add(f"edit {editor}" + (" --paste-back" if photo else ""), r, 2)

    if in_budget("evaluate"):
        eval_images = work / "eval-images"
        eval_images.mkdir(exist_ok=True)
        (eval_images / faces[0].name).write_bytes(faces[0].read_bytes())
        r = magec(
            [
                "evaluate",
                "--pack",
                str(pack),
                "--images",
                str(eval_images),
                "--methods",
                "magec",
                "--reference-size",
                "8",
                "--edits-per-editor",
                "1",
                "--steps-scale",
                str(scale),
                "--no-identity",
                "--out",
                str(work / "eval"),
                "--report",
                str(work / "eval-report.md"),
                "--force",
                "--no-progress",
                *losses,
                *precision,
                *common,
            ],
            logs / "evaluate.log",
        )
        add("evaluate magec, per image (ECS included)", r, 1, f"--steps-scale {scale}, --reference-size 8")

    if in_budget("studio slider"):
        r = script(SLIDER, [str(pack), str(latent), photo, device, str(max(3, repeats * 5))], logs / "slider.log")
        ms = r.get("ms", float("nan"))
        add("studio slider render" + (" + paste" if photo else ""), r, 1, f"{ms:.1f} ms per change")

    print(write_table())
    return 0 if all(row.get("rc") == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
