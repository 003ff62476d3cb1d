"""face-api's expression and age/gender nets in torch, checked against face-api itself running on TF.js.

The reference is the pinned npm package (tests/js/package.json + package-lock.json: @vladmandic/face-api
1.7.15 on @tensorflow/tfjs 4.22.0, pure-JS CPU backend), installed with ``npm ci`` into
``.magec-cache/face-api-js`` on first use. The weights are the ones ``scripts/fetch_face_api.sh``
(``make face-api``, part of ``make install`` when npm is present) put in magec's weights folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from magec.describers.face_api import (
    AGE_GENDER_MANIFEST,
    EXPRESSION_MANIFEST,
    EXPRESSIONS,
    FILE_SHA256,
    AgeGenderNet,
    FaceExpressionNet,
    face_api_dir,
    face_api_input,
    pad_to_square,
)
from magec.describers.tfjs import load_tfjs_weights
from magec.errors import MagecError

REPO = Path(__file__).resolve().parents[1]
JS_DIR = Path(__file__).parent / "js"
#: Where the reference env is installed; override with $MAGEC_TEST_JS_CACHE (e.g. a cache kept between CI runs).
JS_CACHE = Path(os.environ.get("MAGEC_TEST_JS_CACHE", REPO / ".magec-cache" / "face-api-js"))
#: face-api's own aligned face box on skimage's astronaut (ssdMobilenetv1 + 68 landmarks, face-api 1.7.15):
#: x 166.1, y 77.9, w 111.2, h 105.4; cut at integer pixels, so the crop is not square (105 x 111).
ASTRONAUT_ROWS, ASTRONAUT_COLS = slice(78, 183), slice(166, 277)
TOL = 1e-4


def _weights_root() -> Path:
    root = face_api_dir()
    if not all((root / rel).is_file() for rel in FILE_SHA256):
        pytest.skip(f"face-api weights not in {root}: run `make face-api` (scripts/fetch_face_api.sh, needs npm)")
    return root


@pytest.fixture(scope="module")
def root() -> Path:
    return _weights_root()


@pytest.fixture(scope="module")
def nets(root: Path) -> tuple[FaceExpressionNet, AgeGenderNet]:
    return FaceExpressionNet.from_weights(root), AgeGenderNet.from_weights(root)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """face-api + tfjs from the committed lock file, installed once (keyed by the lock's hash)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the TF.js reference (apt-get install nodejs npm)")
    lock = (JS_DIR / "package-lock.json").read_bytes()
    stamp = JS_CACHE / ".lock-sha256"
    digest = hashlib.sha256(lock).hexdigest()
    if not (stamp.is_file() and stamp.read_text() == digest and (JS_CACHE / "node_modules").is_dir()):
        JS_CACHE.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(JS_DIR / name, JS_CACHE / name)
        done = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS_CACHE,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci of tests/js failed: {done.stderr.strip()[-500:]}")
        stamp.write_text(digest)
    return JS_CACHE / "node_modules"


def reference(node_modules: Path, root: Path, faces: list[torch.Tensor], tmp: Path, batch: bool) -> dict:
    """face-api's outputs for (3, H, W) crops in 0..255, run by tests/js/face_api_reference.js."""
    spec: dict = {"inputs": [], "batch": batch}
    for i, face in enumerate(faces):
        hwc = face.permute(1, 2, 0).contiguous().numpy().astype("<f4")
        hwc.tofile(tmp / f"in{i}.bin")
        spec["inputs"].append({"path": f"in{i}.bin", "shape": list(hwc.shape)})
    (tmp / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run(
        ["node", str(JS_DIR / "face_api_reference.js"), str(root / "model"), str(tmp / "spec.json")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(node_modules)},
    )
    assert done.returncode == 0, done.stderr[-800:]
    out = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    assert out["backend"] == "cpu" and out["tfjs"] == "4.22.0"
    return out


def astronaut_crop() -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(data.astronaut()[ASTRONAUT_ROWS, ASTRONAUT_COLS].copy()).permute(2, 0, 1).float()


def test_parameter_counts(nets):
    """The sizes face-api documents (0.32 M / 0.42 M): every manifest tensor landed in a buffer."""
    expr, age_gender = nets
    count = lambda m: sum(b.numel() for name, b in m.named_buffers() if name != "mean_rgb")
    assert count(expr) == 323_687
    assert count(age_gender) == 421_731


@pytest.mark.slow
@pytest.mark.parametrize("batch", [False, True])
def test_matches_tfjs(nets, root, node_modules, tmp_path, batch):
    """Astronaut face (non-square crop: face-api's padding + resize) and seeded random crops, 1e-4 of TF.js."""
    g = torch.Generator().manual_seed(1234)
    faces = [astronaut_crop(), torch.rand(3, 112, 112, generator=g) * 255, torch.rand(3, 90, 131, generator=g) * 255]
    ref = reference(node_modules, root, faces, tmp_path, batch)
    expr, age_gender = nets
    with torch.no_grad():
        x = expr.normalise(face_api_input(faces))
        probs = expr.forward_input(x)
        age, gender = age_gender.forward_input(x)
    assert (probs - torch.tensor(ref["expression"])).abs().max().item() < TOL
    assert (gender - torch.tensor(ref["gender"])).abs().max().item() < TOL
    assert (age - torch.tensor(ref["age"])).abs().max().item() < TOL


def test_astronaut_is_a_smiling_woman_in_her_thirties(nets):
    """face-api's own full pipeline says happy (1.00), female (0.87), 32.4 years; our nets on its box agree."""
    expr, age_gender = nets
    with torch.no_grad():
        x = expr.normalise(face_api_input([astronaut_crop()]))
        probs = expr.forward_input(x)[0]
        age, gender = age_gender.forward_input(x)
    assert EXPRESSIONS[int(probs.argmax())] == "happy" and probs[EXPRESSIONS.index("happy")] > 0.99
    assert gender[0, 1] > 0.8  # P(female)
    assert 28 < age.item() < 38


def test_module_takes_magec_images_and_gives_gradients(nets):
    """forward(images in [-1, 1]) = the face-api path on the same pixels, and is differentiable."""
    expr, age_gender = nets
    g = torch.Generator().manual_seed(5)
    images = (torch.rand(2, 3, 112, 112, generator=g) * 2 - 1).requires_grad_(True)
    direct = expr.forward_input(expr.normalise((images + 1) * 127.5))
    assert torch.allclose(expr(images), direct, atol=1e-5)  # a full-frame box at 112 px is the identity crop
    age, gender = age_gender(images)
    (expr(images)[:, EXPRESSIONS.index("happy")].sum() + age.sum() + gender[:, 0].sum()).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert age.shape == (2,) and gender.shape == (2, 2) and torch.allclose(gender.sum(1), torch.ones(2))


def test_pad_to_square_puts_the_larger_half_after():
    """face-api pads with Math.round(diff / 2) after the image and the rest before (diff 3: 1 before, 2 after)."""
    img = torch.ones(3, 4, 7)
    out = pad_to_square(img)
    assert out.shape == (3, 7, 7)
    assert out[0, :, 0].tolist() == [0, 1, 1, 1, 1, 0, 0]


# --- refusing bad files -------------------------------------------------------------------------------


def _copy(root: Path, tmp: Path) -> Path:
    for rel in FILE_SHA256:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, tmp / rel)
    return tmp


def _one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_corrupted_shard_is_refused(root, tmp_path):
    copy = _copy(root, tmp_path)
    shard = copy / "model/face_expression_model.bin"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(MagecError) as exc:
        FaceExpressionNet.from_weights(copy)
    assert "sha256" in _one_line(exc, shard)
    shard.write_bytes(bytes(data[:-10]))  # truncated: refused by the reader even without the pinned digest
    with pytest.raises(MagecError) as exc:
        FaceExpressionNet.from_weights(copy, verify=False)
    assert "bytes" in _one_line(exc, shard)


def test_wrong_manifest_is_refused(root, tmp_path):
    """The age/gender files where the expression net's should be: refused, naming missing weights."""
    copy = _copy(root, tmp_path)
    manifest = copy / EXPRESSION_MANIFEST
    shutil.copyfile(copy / AGE_GENDER_MANIFEST, manifest)
    shutil.copyfile(copy / "model/age_gender_model.bin", copy / "model/face_expression_model.bin")
    (copy / "model/age_gender_model.bin").unlink()
    text = manifest.read_text().replace("age_gender_model.bin", "face_expression_model.bin")
    manifest.write_text(text)
    with pytest.raises(MagecError) as exc:
        FaceExpressionNet.from_weights(copy, verify=False)
    msg = _one_line(exc, manifest)
    assert "missing" in msg and "dense0" in msg and "entry_flow" in msg


def test_missing_files_name_the_fetch_script(tmp_path):
    with pytest.raises(MagecError) as exc:
        AgeGenderNet.from_weights(tmp_path)
    assert "fetch_face_api.sh" in _one_line(exc, tmp_path / AGE_GENDER_MANIFEST)


# --- the TF.js reader on hand-made manifests ----------------------------------------------------------


def _write(tmp: Path, weights: list[dict], shards: dict[str, bytes]) -> Path:
    for name, data in shards.items():
        (tmp / name).write_bytes(data)
    manifest = tmp / "m-weights_manifest.json"
    manifest.write_text(json.dumps([{"paths": list(shards), "weights": weights}]))
    return manifest


def test_reader_decodes_every_allowed_encoding(tmp_path):
    """float32 raw, uint8 / uint16 (q * scale + min) and float16, across two shards, in TF.js's order."""
    f32 = np.array([[1.5, -2.25], [3.0, 1e-3]], dtype="<f4")
    u8 = np.array([0, 1, 255], dtype="u1")
    u16 = np.array([0, 65535], dtype="<u2")
    f16 = np.array([1.0, -2.5, 65504.0, 2.0**-24], dtype="<f2")
    blob = f32.tobytes() + u8.tobytes() + u16.tobytes() + f16.tobytes()
    weights = [
        {"name": "a/raw", "shape": [2, 2], "dtype": "float32"},
        {
            "name": "a/u8",
            "shape": [3],
            "dtype": "float32",
            "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0},
        },
        {
            "name": "a/u16",
            "shape": [2, 1],
            "dtype": "float32",
            "quantization": {"dtype": "uint16", "scale": 0.001, "min": 2.0},
        },
        {"name": "a/f16", "shape": [4], "dtype": "float32", "quantization": {"dtype": "float16"}},
    ]
    manifest = _write(tmp_path, weights, {"s1.bin": blob[:10], "s2.bin": blob[10:]})  # a weight spans the shards
    got = load_tfjs_weights(manifest)
    assert list(got) == ["a/raw", "a/u8", "a/u16", "a/f16"]
    assert torch.equal(got["a/raw"], torch.from_numpy(f32))
    assert got["a/u8"].tolist() == [-1.0, -0.5, 126.5]
    assert torch.allclose(got["a/u16"], torch.tensor([[2.0], [67.535]]))
    assert got["a/f16"].tolist() == [1.0, -2.5, 65504.0, 2.0**-24]
    assert all(t.dtype == torch.float32 for t in got.values())


@pytest.mark.parametrize(
    ("entry", "shard", "paths", "needle"),
    [
        ({"dtype": "int32"}, b"\0" * 8, None, "dtype 'int32'"),
        ({"quantization": {"dtype": "int8", "scale": 1, "min": 0}}, b"\0" * 2, None, "quantization"),
        ({"quantization": {"dtype": "uint8", "scale": 1}}, b"\0" * 2, None, "'scale' and 'min'"),
        ({"quantization": {"scale": 1, "min": 0}}, b"\0" * 2, None, "quantization"),
        ({}, b"\0" * 7, None, "bytes"),
        ({}, b"\0" * 9, None, "bytes"),
        ({}, b"\0\0\xc0\x7f" * 2, None, "non-finite"),
        ({}, b"\0" * 8, ["../outside.bin"], "leaves"),
        ({}, b"\0" * 8, ["absent.bin"], "missing shard"),
        ({"shape": [2, -1]}, b"\0" * 8, None, "shape"),
    ],
)
def test_reader_refuses_what_it_does_not_know(tmp_path, entry, shard, paths, needle):
    weight = {"name": "w", "shape": [2], "dtype": "float32", **entry}
    manifest = _write(tmp_path, [weight], {"s.bin": shard})
    if paths is not None:
        manifest.write_text(json.dumps([{"paths": paths, "weights": [weight]}]))
    with pytest.raises(MagecError) as exc:
        load_tfjs_weights(manifest)
    msg = str(exc.value)
    assert "\n" not in msg and needle in msg and str(tmp_path) in msg, msg


@pytest.mark.parametrize("text", ["not json", "{}", "[]", '[{"paths": "s.bin", "weights": []}]'])
def test_reader_refuses_non_manifests(tmp_path, text):
    manifest = tmp_path / "model.json"
    manifest.write_text(text)
    with pytest.raises(MagecError) as exc:
        load_tfjs_weights(manifest)
    assert str(exc.value).startswith(str(manifest)) and "\n" not in str(exc.value)
