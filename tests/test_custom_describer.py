"""Bring your own describer: ``onnx:MODEL.onnx:LAYOUT.json`` and torch modules as F.

The must-show test trains a small torch classifier on the embedded DCGAN's images labelled by their
brightness, exports it with ``torch.onnx.export``, prepares a pack with it and checks that the InterfaceGAN
direction fitted for its attribute raises that describer's output for most seeded latents.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from magec.describers import load_describer
from magec.describers.custom import describer_from_module, parse_layout, read_layout
from magec.describers.onnx_files import OP_INPUTS, check_onnx_file
from magec.describers.onnx_graph import OnnxGraphModule
from magec.errors import MagecError

BRIGHT_LAYOUT = {
    "format": "magec-describer-layout",
    "version": 1,
    "input": {"size": [32, 32], "crop": [0.0, 0.0, 1.0, 1.0], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    "output": "logits",
    "heads": [
        {"name": "bright", "kind": "binary"},
        {
            "name": "tone",
            "kind": "categorical",
            "classes": ["cool", "warm"],
            "attribute": "warm",
            "positive_class": "warm",
        },
    ],
}


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def tiny_onnx(path: Path, op: str = "Gemm", outputs: int = 3) -> Path:
    """A hand-built graph: GlobalAveragePool -> Flatten -> Gemm (3 -> ``outputs``), or one unsupported ``op``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, None, None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, outputs])
    w = numpy_helper.from_array(np.linspace(-1, 1, 3 * outputs, dtype=np.float32).reshape(outputs, 3), "w")
    b = numpy_helper.from_array(np.zeros(outputs, dtype=np.float32), "b")
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"])]
    if op == "Gemm":
        nodes.append(helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1))
    else:
        nodes += [helper.make_node(op, ["f"], ["g"]), helper.make_node("Gemm", ["g", "w", "b"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=[w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


#: Graphs whose nodes disagree with their inputs (``inconsistent_onnx``) and the line each is refused with.
INCONSISTENT = {
    "constant-without-value": "node 'c0' (Constant): needs exactly the 'value' attribute (a tensor), found []",
    "conv-one-input": "node 'conv0' (Conv): needs 2 or 3 inputs, has 1",
    "concat-axis-out-of-range": "node 'cat0' (Concat): axis 5 is out of range for 2-D inputs",
}


def inconsistent_onnx(path: Path, kind: str) -> Path:
    """``tiny_onnx``'s graph with one node (named as in ``INCONSISTENT``) that its inputs do not fit."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, None, None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])
    width = 6 if kind == "concat-axis-out-of-range" else 3
    w = numpy_helper.from_array(np.linspace(-1, 1, 3 * width, dtype=np.float32).reshape(3, width), "w")
    b = numpy_helper.from_array(np.zeros(3, dtype=np.float32), "b")
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"])]
    if kind == "constant-without-value":
        nodes.insert(0, helper.make_node("Constant", [], ["c"], name="c0"))
        nodes.append(helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1))
    elif kind == "conv-one-input":
        nodes.insert(0, helper.make_node("Conv", ["x"], ["x2"], name="conv0"))
        nodes.append(helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1))
    elif kind == "concat-axis-out-of-range":
        nodes.append(helper.make_node("Concat", ["f", "f"], ["g"], name="cat0", axis=5))
        nodes.append(helper.make_node("Gemm", ["g", "w", "b"], ["y"], transB=1))
    else:
        raise ValueError(kind)
    graph = helper.make_graph(nodes, "inconsistent", [x], [y], initializer=[w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


class Classifier(nn.Module):
    """A small CNN with the layers a user's classifier has (BatchNorm, LeakyReLU, Tanh, two output heads)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.LeakyReLU(0.1),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Linear(16 * 4 * 4, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).reshape(-1, 16 * 4 * 4)
        return self.head(h)


def export(module: nn.Module, path: Path, size: int = 32) -> Path:
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(2, 3, size, size),), str(path), dynamo=False)
    return path


def test_translator_matches_onnxruntime_on_exported_ops(tmp_path):
    """Every op added for torch exports (BatchNorm, Sigmoid, Reshape, Transpose, MatMul, Concat...) vs onnxruntime."""
    import onnx
    import onnxruntime as ort

    class Ops(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.w = nn.Parameter(torch.randn(8, 5))
            self.fc = nn.Linear(5 * 16, 4)
            self.bn1 = nn.BatchNorm1d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.bn(torch.sigmoid(nn.functional.leaky_relu(self.conv(x), 0.1)))
            h = nn.functional.max_pool2d(h, 2).reshape(-1, 8, 16).transpose(1, 2)
            h = torch.tanh(torch.matmul(h, self.w)).reshape(-1, 5 * 16)
            h = self.bn1(self.fc(h))
            return torch.cat([h, torch.relu(h)], 1)

    gen = torch.Generator().manual_seed(0)
    model = Ops()
    with torch.no_grad():
        for p in [*model.parameters(), model.bn.running_mean, model.bn1.running_mean]:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        model.bn.running_var.copy_(torch.rand(8, generator=gen) + 0.5)
        model.bn1.running_var.copy_(torch.rand(4, generator=gen) + 0.5)
    path = tmp_path / "ops.onnx"
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 3, 8, 8),), str(path), dynamo=False)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"BatchNormalization", "Sigmoid", "Reshape", "Transpose", "MatMul", "Concat", "Tanh", "LeakyRelu"} <= ops
    net = OnnxGraphModule(path)
    session = ort.InferenceSession(str(path))
    for batch in (2, 5):
        x = torch.randn(batch, 3, 8, 8, generator=gen)
        ref = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0] if batch == 2 else None
        got = net(x)
        with torch.no_grad():
            expected = model(x)
        assert torch.allclose(got, expected, atol=1e-5)
        if ref is not None:
            assert np.abs(got.numpy() - ref).max() < 1e-5
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    net(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # differentiable w.r.t. the image


def test_unsupported_op_is_refused_by_name(tmp_path):
    with pytest.raises(MagecError, match="unsupported ONNX op 'Erf'"):
        OnnxGraphModule(tiny_onnx(tmp_path / "erf.onnx", op="Erf"))


@pytest.mark.parametrize("kind", sorted(INCONSISTENT))
def test_nodes_their_inputs_do_not_fit_are_refused_by_name(tmp_path, kind):
    """One line naming the node, never an unexpected error; all but the Concat (whose rank shows only when the
    graph runs) are refused by the torch-free file check already."""
    model = inconsistent_onnx(tmp_path / "m.onnx", kind)
    layout = write_json(tmp_path / "l.json", BRIGHT_LAYOUT)
    with pytest.raises(MagecError) as info:
        load_describer(f"onnx:{model}:{layout}", "cpu")
    assert str(info.value) == f"{model}: {INCONSISTENT[kind]}"
    if kind != "concat-axis-out-of-range":
        with pytest.raises(MagecError, match=re.escape(INCONSISTENT[kind])):
            check_onnx_file(model)
    else:
        check_onnx_file(model)


def test_an_onnx_file_past_the_weight_limit_is_refused_unread(tmp_path):
    from magec.describers.onnx_files import MAX_ONNX_FILE_BYTES

    path = tmp_path / "big.onnx"
    with open(path, "wb") as fh:
        fh.truncate(MAX_ONNX_FILE_BYTES + 1)  # sparse: no disk used, and nothing is read
    with pytest.raises(MagecError, match=f"ONNX file of {MAX_ONNX_FILE_BYTES + 1} bytes, more than"):
        check_onnx_file(path)


def test_onnx_checks_need_no_torch_and_name_every_op_the_translator_runs(tmp_path):
    """``magec prepare --describer onnx:...`` refuses bad files before torch is imported; the file check's op list
    is the translator's."""
    from magec.describers.onnx_graph import _OPS, ALLOWED_OPS

    assert set(_OPS) == set(OP_INPUTS) == ALLOWED_OPS
    tiny_onnx(tmp_path / "erf.onnx", op="Erf")
    write_json(tmp_path / "l.json", BRIGHT_LAYOUT)
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    code = (
        "import sys\n"
        "from magec.cli.main import main\n"
        "for spec in sys.argv[1:]:\n"
        "    rc = main(['prepare', '--out', 'p', '--describer', 'onnx:' + spec, '--device', 'cpu'])\n"
        "    print(rc, 'torch' in sys.modules)\n"
    )
    specs = ["erf.onnx:l.json", "erf.onnx:deep.json", "none.onnx:l.json", "erf.onnx:none.json", "erf.onnx"]
    src = str(Path(__file__).resolve().parents[1] / "src")  # this tree's magec, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code, *specs], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.stdout.split() == ["1", "False"] * len(specs), out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == len(specs) and all(line.startswith("magec: error: ") for line in lines), lines
    assert "unsupported ONNX op 'Erf'" in lines[0] and "nested too deeply" in lines[1]
    assert "missing ONNX file" in lines[2] and "missing describer layout file" in lines[3]
    assert "needs the model file and the layout file" in lines[4]
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(extra=1), "unknown key 'extra' in the file"),
        (lambda d: d["input"].update(colour="rgb"), "unknown key 'colour' in input"),
        (lambda d: d["heads"][0].update(bias=0), "unknown key 'bias' in heads[0]"),
        (lambda d: d["input"].update(size=[32, "32"]), "input.size must be"),
        (lambda d: d["input"].update(size=[32, True]), "input.size must be"),
        (lambda d: d["input"].update(std=[0.5, 0.0, 0.5]), "must be positive"),
        (lambda d: d["input"].update(crop=[0.5, 0, 0.4, 1]), "input.crop"),
        (lambda d: d["input"].update(mean=[0.5, 0.5]), "input.mean must be a list of 3 numbers"),
        (lambda d: d.update(output="scores"), "output must be 'logits' or 'probabilities'"),
        (lambda d: d["heads"][1].update(positive_class="hot"), "is not one of its classes"),
        (lambda d: d["heads"].append({"name": "bright", "kind": "binary"}), "name 'bright' is used twice"),
        (lambda d: d["heads"].append({"name": "age", "kind": "continuous", "class_values": [3, 2]}), "increasing"),
        (lambda d: d["heads"].append({"name": "age", "kind": "regression"}), "kind must be one of"),
        (lambda d: d.update(version=2), "version 2 is not supported"),
        (lambda d: d["heads"][0].pop("name"), "heads[0] misses 'name'"),
    ],
)
def test_layout_is_checked_strictly(change, problem):
    data = json.loads(json.dumps(BRIGHT_LAYOUT))
    change(data)
    with pytest.raises(MagecError, match="describer layout: ") as info:
        parse_layout(data, "layout.json")
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_layout_file_nan_duplicates_and_output_width(tmp_path):
    text = json.dumps(BRIGHT_LAYOUT).replace('"std": [0.25, 0.25, 0.25]', '"std": [0.25, NaN, 0.25]')
    (tmp_path / "nan.json").write_text(text)
    with pytest.raises(MagecError, match="not valid JSON.*NaN"):
        read_layout(tmp_path / "nan.json")
    (tmp_path / "dup.json").write_text('{"format": 1, "format": 2}')
    with pytest.raises(MagecError, match="duplicate key 'format'"):
        read_layout(tmp_path / "dup.json")
    layout = write_json(tmp_path / "layout.json", BRIGHT_LAYOUT)  # 3 columns: bright + 2 tone classes
    with pytest.raises(MagecError, match=r"model output has shape \(1, 2\), the layout's heads need \(batch, 3\)"):
        load_describer(f"onnx:{tiny_onnx(tmp_path / 'two.onnx', outputs=2)}:{layout}", "cpu")
    with pytest.raises(MagecError, match="missing ONNX file"):
        load_describer(f"onnx:{tmp_path / 'nope.onnx'}:{layout}", "cpu")
    with pytest.raises(MagecError, match="missing describer layout file"):
        load_describer(f"onnx:{tmp_path / 'two.onnx'}:{tmp_path / 'nope.json'}", "cpu")
    with pytest.raises(MagecError, match="needs the model file and the layout file"):
        load_describer("onnx:only.onnx", "cpu")


def test_torch_module_describer_and_its_features():
    gen = torch.Generator().manual_seed(1)
    model = Classifier().eval()
    describer = describer_from_module(model, BRIGHT_LAYOUT)
    images = torch.rand(4, 3, 64, 64, generator=gen) * 2 - 1
    probs = describer(images)
    assert probs.shape == (4, 3) and torch.allclose(probs[:, 1:].sum(1), torch.ones(4))
    assert describer.layout.attribute_names == ["bright", "warm"]
    feats = describer.features(images)
    assert len(feats) == 2 and all(f.dim() == 4 for f in feats)  # LeakyReLU and ReLU maps


def _train_brightness_classifier(images: torch.Tensor, seed: int = 0) -> Classifier:
    """A few Adam steps on (image, brightness above median, warm = red above blue) pairs."""
    layout = parse_layout(BRIGHT_LAYOUT)
    wrapper = describer_from_module(Classifier(), layout)
    x = wrapper.net_input(images)
    bright = (images.mean((1, 2, 3)) > images.mean((1, 2, 3)).median()).float()
    warm = (images[:, 0].mean((1, 2)) > images[:, 2].mean((1, 2))).long()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Classifier()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        order = torch.randperm(len(x))
        for step in range(120):
            batch = order[(step * 64) % len(x) :][:64]
            out = model(x[batch])
            loss = nn.functional.binary_cross_entropy_with_logits(out[:, 0], bright[batch])
            loss = loss + nn.functional.cross_entropy(out[:, 1:], warm[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = ((model(x)[:, 0] > 0).float() == bright).float().mean()
    assert accuracy > 0.85, f"the brightness classifier did not learn ({accuracy:.2f})"
    return model


@pytest.mark.slow  # 19 s at load 4, 29 s at load 9 (2 cores): training, export, a 300-sample prepare, a CLI prepare
def test_onnx_describer_end_to_end(tmp_path):
    from magec.generators import load_generator
    from magec.pack import Pack
    from magec.pipeline import load_pipeline
    from magec.prepare import PrepareConfig, prepare_pack

    torch.set_num_threads(1)
    generator = load_generator("dcgan-face", "cpu")
    with torch.no_grad():
        images = generator.synthesize(generator.sample_latents(512, seed=11))
    classifier = _train_brightness_classifier(images)
    model_path = export(classifier, tmp_path / "bright.onnx")
    layout_path = write_json(tmp_path / "bright.json", BRIGHT_LAYOUT)
    spec = f"onnx:{model_path}:{layout_path}"
    describer = load_describer(spec, "cpu")
    with torch.no_grad():  # the translated graph computes what the torch classifier computes
        expected = describer_from_module(classifier, BRIGHT_LAYOUT)(images[:8])
        assert torch.allclose(describer(images[:8]), expected, atol=1e-5)
    pack = prepare_pack(generator, describer, PrepareConfig(n_samples=300, styleflow=None), progress=False)
    assert pack.describer_files == describer.files and set(pack.describer_files) == {"model", "layout"}
    assert pack.describer_spec == f"onnx:{model_path.resolve()}:{layout_path.resolve()}"

    # The must-show: InterfaceGAN's "bright" direction raises this describer's P(bright).
    z = generator.sample_latents(32, seed=123)
    edited = pack.interfacegan.edit(z, "bright", pack.interfacegan.default_amount)
    with torch.no_grad():
        before = describer.layout.attribute_values(describer(generator.synthesize(z)))[:, 0]
        after = describer.layout.attribute_values(describer(generator.synthesize(edited)))[:, 0]
    raised = (after > before).float().mean()
    assert raised >= 0.8, f"only {raised:.0%} of latents got brighter under the InterfaceGAN edit"
    assert (after - before).mean() > 0.1

    # The pack reloads the same F (spec + hashes), and refuses a changed layout file under the same spec.
    pack.save(tmp_path / "pack")
    assert Pack.load(tmp_path / "pack").describer_files == describer.files
    pipe = load_pipeline(tmp_path / "pack", "cpu", perceptual="describer-features")
    assert pipe.describer.files == describer.files
    layout_path.write_text(json.dumps(BRIGHT_LAYOUT, indent=1))  # same content, other bytes
    with pytest.raises(MagecError, match="describer layout file differs"):
        load_pipeline(tmp_path / "pack", "cpu", perceptual="describer-features")
    layout_path.write_text(json.dumps(BRIGHT_LAYOUT))

    # CLI smoke: the same describer through `magec prepare --describer onnx:...`.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "magec",
            "prepare",
            "--out",
            str(tmp_path / "cli-pack"),
            "--describer",
            spec,
            "--samples",
            "60",
            "--no-styleflow",
            "--no-encoder",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((tmp_path / "cli-pack" / "manifest.json").read_text())
    assert manifest["describer"]["files"] == describer.files
    assert manifest["describer"]["layout"]["attributes"][0]["name"] == "bright"


def test_pack_refuses_the_same_spec_with_other_files_but_allows_an_override():
    from types import SimpleNamespace

    from magec.pipeline import check_describer_files

    pack = SimpleNamespace(
        describer_spec="onnx:/m.onnx:/l.json", describer_files={"model": "a" * 64, "layout": "b" * 64}
    )
    same = SimpleNamespace(spec="onnx:/m.onnx:/l.json", files={"model": "a" * 64, "layout": "b" * 64})
    check_describer_files("P", pack, same)
    changed = SimpleNamespace(spec="onnx:/m.onnx:/l.json", files={"model": "c" * 64, "layout": "b" * 64})
    with pytest.raises(MagecError, match="P: describer model file differs"):
        check_describer_files("P", pack, changed)
    override = SimpleNamespace(spec="onnx:/other.onnx:/l.json", files={"model": "c" * 64, "layout": "b" * 64})
    check_describer_files("P", pack, override)  # an explicit --describer under another spec is the user's choice
