"""The Python API: the README's example runs, ``import magec`` is light and side-effect free, the package's
imports run downwards only, and ``invert``'s step callback sees every step and can stop the run."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import magec
from magec.inversion import method_config

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "magec"

#: The architecture, bottom to top: a module may import from its own part or from parts below it.
LAYERS: list[set[str]] = [
    {"errors", "validation", "seeding", "timing", "devices", "memory", "_version"},
    {"io", "weights"},
    {"faces", "generators", "visualize"},
    {"describers"},
    {"latent"},
    {"losses"},
    {"pack"},
    {"encoders"},
    {"prepare"},
    {"pipeline"},
    {"inversion", "render", "editing"},
    {"evaluation", "preview", "entanglement", "bench"},
    {"distributed"},
    {"demo"},
    {"studio"},
    {"cli", "__main__"},
]
LAYER_OF = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else module


def _runtime_imports(path: Path) -> list[tuple[int, str]]:
    """``magec.*`` modules imported by ``path``, outside ``if TYPE_CHECKING:`` blocks (those never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("magec"):
                if child.module == "magec":
                    found.extend((child.lineno, f"magec.{a.name}") for a in child.names)
                else:
                    found.append((child.lineno, child.module))
            elif isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names if a.name.startswith("magec."))
            visit(child)

    visit(tree)
    return found


def test_every_part_of_the_package_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if not p.name.startswith(("_", "."))}
    parts = {p for p in parts if (PACKAGE / p).is_dir() or (PACKAGE / f"{p}.py").is_file()}
    assert parts - {"__pycache__"} <= set(LAYER_OF), f"unplaced: {sorted(parts - set(LAYER_OF))}"


def test_imports_run_downwards_only():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("").as_posix().replace("/", ".")
        if rel == "magec.__init__":
            continue  # the top-level API hands out names from every layer, lazily
        own = _part(rel)
        for line, module in _runtime_imports(path):
            other = _part(module)
            if other in ("__init__", "magec", "__version__") or other == own:
                continue
            if LAYER_OF[other] > LAYER_OF[own]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({other} is above {own})")
    assert not upward, "\n".join(upward)


@pytest.mark.slow
def test_import_magec_is_light_and_leaves_matplotlib_alone():
    code = (
        "import sys, magec, magec.render, magec.demo, magec.evaluation.plots, magec.visualize, matplotlib\n"
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "svg"}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "svg"
    bare = subprocess.run(
        [sys.executable, "-c", "import sys, magec; print('torch' in sys.modules, len(magec.__all__))"],
        capture_output=True,
        text=True,
    )
    assert bare.stdout.split()[0] == "False" and int(bare.stdout.split()[1]) > 15
    # ``--init`` is checked (encoder file names, e4e:/psp: prefixes, the file's hash) before torch loads.
    starts = subprocess.run(
        [sys.executable, "-c", "import sys, magec.inversion.starts, magec.io.hashing; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
    )
    assert starts.stdout.strip() == "False", starts.stderr


def test_every_exported_name_resolves():
    for name in magec.__all__:
        assert getattr(magec, name) is not None, name
    with pytest.raises(AttributeError):
        magec.no_such_thing  # noqa: B018


@pytest.mark.slow
def test_readme_example_runs_and_frames_the_face(embedded_pack, tmp_path, monkeypatch):
    """The README's Python API block, run verbatim (it writes the astronaut itself), with the cache holding a
    (small) embedded pack; the face is framed: dlib's identity distance from the projection to her framed face
    is lower than that of the projection of the plain centre crop (``load_image``), inverted the same way."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    embedded_pack.save(tmp_path / "cache" / "embedded-pack")
    monkeypatch.setenv("MAGEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # our own documentation
    pipe, photo, result = namespace["pipe"], namespace["photo"], namespace["result"]
    assert result.steps == 200 and result.history[-1]["mse"][0] < result.history[0]["mse"][0]
    assert (tmp_path / "older.png").is_file()
    from magec.losses.dlib_recognition import DlibIdentityLoss

    assert isinstance(pipe.identity, DlibIdentityLoss)  # dlib's identity, as the identity tests use it
    centre = magec.load_image("astronaut.png", pipe.generator.resolution).to(pipe.device)
    centred = magec.invert(pipe, centre, "magec")
    with torch.no_grad():
        framed_distance = float(pipe.identity(result.images, photo))
        centre_distance = float(pipe.identity(centred.images, photo))
    assert framed_distance < centre_distance, (framed_distance, centre_distance)


@pytest.mark.slow
def test_callback_sees_every_step_on_the_device_and_can_stop(tone_pipeline):
    target = tone_pipeline.generator.synthesize(tone_pipeline.generator.sample_latents(2, seed=5))
    seen = []

    def watch(info: magec.StepInfo) -> bool:
        seen.append(info)
        return info.step == 4  # stop after the fifth step

    config = method_config("magec", steps_scale=0.1)
    result = magec.invert(tone_pipeline, target, "magec", config, callback=watch)
    assert [i.step for i in seen] == [0, 1, 2, 3, 4] and result.steps == 5 and result.stopped
    assert all(i.total_steps == 20 and i.phase == 1 and i.target == "latent" for i in seen)
    first = seen[0].losses
    assert set(first) >= {"total", "mse", "perceptual", "magec"}
    assert all(v.shape == (2,) and v.device == tone_pipeline.device and not v.requires_grad for v in first.values())
    # The history equals what the callback saw, moved to the CPU once at the end.
    assert len(result.history) == 5 and result.history[2]["mse"] == seen[2].losses["mse"].tolist()
    full = magec.invert(tone_pipeline, target, "magec", config)
    assert full.steps == 20 and not full.stopped
    assert full.history[4]["mse"] == result.history[4]["mse"]  # stopping changes nothing before the stop
