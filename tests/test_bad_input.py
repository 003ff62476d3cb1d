"""Bad input through the real command line: one error line, no traceback, nothing lost or half-written.

Each case runs ``python -m magec ...`` in a subprocess inside its own workspace folder and asserts:
the exit code; exactly one stderr line starting ``magec: error:`` naming the problem (or the documented
success); no traceback and no "unexpected" error; the workspace and the shared fixtures unchanged
(byte for byte) unless the case documents what the command writes; and, for the large-image cases, a
peak memory (the child's own maximum resident set, from ``wait4``) under a cap, with an address-space
limit as a hard stop. The cases run concurrently (three at a time) in a module fixture; one test per
case then checks its result.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from magec.describers.face_api import face_api_dir
from magec.inversion.outputs import save_latent
from magec.io.images import save_png

MiB = 1 << 20
pytestmark = pytest.mark.slow  # ~2 min: `make check` leaves it out, `make test` (CI) runs it


@dataclass
class Case:
    id: str
    args: list[str]
    #: Expected exit code (2: malformed command line, 1: refused input, 0: documented success, 130: Ctrl-C).
    code: int = 1
    #: Substring the single error line must contain.
    err: str = ""
    setup: Callable[[Path, dict[str, Path]], None] | None = None
    #: For successes: checks what was written (the workspace is then allowed to change).
    check: Callable[[Path, dict[str, Path]], None] | None = None
    #: Peak resident memory cap (MiB) of the child process.
    max_rss_mb: int | None = None
    #: CPU seconds cap (user + system) of the child process (measured with the memory).
    max_cpu_s: float | None = None
    sigint_after: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: For successes: a substring of what the command prints.
    out: str = ""


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    before: dict[str, str]
    after: dict[str, str]
    max_rss_mb: float
    workspace: Path
    cpu_s: float = float("nan")


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its bytes and its mode."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink() or p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()[:16] + f":{p.stat().st_mode:o}"
        else:
            out[rel + "/"] = "dir"
    return out


# ---- shared fixtures: built once, in-process, and checked unchanged at the end -------------------------


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` with a tiny (truncated) image stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def big_face_jpeg(path: Path, side: int = 12000) -> None:
    """A ``side`` x ``side`` JPEG (144 MP at 12000) with scikit-image's astronaut, enlarged, as its face."""
    from skimage import data

    face = Image.fromarray(data.astronaut()).resize((4096, 4096), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (side, side), (118, 112, 104))
    canvas.paste(face, (side // 3, side // 4))
    canvas.save(path, quality=80)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.fixture(scope="module")
def shared(tmp_path_factory, embedded_pack, dcgan) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shared")
    f: dict[str, Path] = {"root": root}
    f["pack"] = embedded_pack.save(root / "pack")
    with torch.no_grad():
        z = dcgan.sample_latents(1, seed=4242)
        image = dcgan.synthesize(z)[0]
    f["face"] = save_png(image, root / "face.png")
    meta = {"generator": "dcgan-face", "method": "magec", "source_name": "face"}
    f["latent"] = save_latent(root / "face.latent.safetensors", z, "z", None, image, meta)
    f["latent_shape"] = save_latent(root / "short.latent.safetensors", z[:, :50], "z", None, image, meta)
    f["latent_space"] = save_latent(root / "space.latent.safetensors", z, "w", None, image, meta)
    f["latent_nan"] = save_latent(
        root / "nan.latent.safetensors", torch.full_like(z, float("nan")), "z", None, image, meta
    )
    from safetensors.torch import save_file

    save_file(
        {"latent": z},
        str(root / "meta.latent.safetensors"),
        metadata={"format": "magec-latent", "space": "z", "metadata": "{not json"},
    )
    f["latent_meta"] = root / "meta.latent.safetensors"
    framed = {
        **meta,
        "photo": {"framing": "face-crop", "origin": [10, 10], "u": [40, 0], "v": [0, 40], "photo_size": [64, 64]},
    }
    f["latent_framed"] = save_latent(root / "framed.latent.safetensors", z, "z", None, image, framed)
    f["latent_tuned"] = save_latent(root / "tuned.latent.safetensors", z, "z", None, image, meta)
    from magec.generators.delta import save_delta
    from magec.io.hashing import sha256_file

    for key, seed in (("latent_pti", 4242), ("latent_pti_other", 77)):  # +pti latents, each with its own delta
        zz = dcgan.sample_latents(1, seed=seed)
        tuned_meta = {**meta, "method": "magec+pti"}
        latent = save_latent(root / key / "face.latent.safetensors", zz, "z", None, image, tuned_meta)
        f[key] = latent
        sha = sha256_file(latent)
        f[key + "_delta"] = save_delta(root / key / "face.pti.safetensors", {}, dcgan, latent_sha256=sha)
    (root / "tuned.pti.safetensors").write_bytes(b"not a delta")
    # A pack whose tensors hold a NaN but whose manifest hash is valid.
    nan_pack = root / "nan-pack"
    shutil.copytree(f["pack"], nan_pack)
    from safetensors.torch import load_file

    tensors = load_file(str(nan_pack / "tensors.safetensors"))
    key = next(k for k in tensors if k.startswith("linknet."))
    tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, str(nan_pack / "tensors.safetensors"))
    manifest = json.loads((nan_pack / "manifest.json").read_text())
    manifest["tensors"]["sha256"] = sha256_file(nan_pack / "tensors.safetensors")
    (nan_pack / "manifest.json").write_text(json.dumps(manifest))
    f["nan_pack"] = nan_pack
    corrupt = root / "corrupt-pack"
    shutil.copytree(f["pack"], corrupt)
    with open(corrupt / "tensors.safetensors", "r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\xff" * 8)
    f["corrupt_pack"] = corrupt
    encoder_packs(f, dcgan)
    (root / "notes.png").write_text("this is not an image")
    f["text_png"] = root / "notes.png"
    (root / "empty.jpg").write_bytes(b"")
    f["empty"] = root / "empty.jpg"
    full = (root / "face.png").read_bytes()
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    f["truncated"] = root / "truncated.png"
    (root / "bomb.png").write_bytes(bomb_png(60000, 60000))
    f["bomb"] = root / "bomb.png"
    Image.new("RGB", (256, 256), (128, 128, 128)).save(root / "gray.png")
    f["gray"] = root / "gray.png"
    big_face_jpeg(root / "big.jpg")
    f["big"] = root / "big.jpg"
    (root / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    f["evil"] = root / "evil.pkl"
    (root / "garbage.pt").write_bytes(os.urandom(4096))
    f["garbage"] = root / "garbage.pt"
    from magec.generators.stylegan2.config import StyleGAN2Config
    from magec.generators.stylegan2.model import StyleGAN2Generator
    from nvidia_fake import build_fake_pickle, nvidia_tensors_from

    tiny_config = StyleGAN2Config(resolution=32, style_dim=32, channels=(16, 16, 8, 8))
    tiny = StyleGAN2Generator.random(tiny_config, seed=1, w_avg_samples=200)
    nv = nvidia_tensors_from(tiny)
    (root / "nvidia.pkl").write_bytes(build_fake_pickle(nv, tiny_config, root / "module_src_ran"))
    f["nvidia_pkl"] = root / "nvidia.pkl"
    torch.save({"g_ema": tiny.state_dict(), "latent_avg": nv["mapping.w_avg"].clone()}, root / "rosinality.pt")
    f["rosinality_pt"] = root / "rosinality.pt"
    (root / "truncated.pkl").write_bytes(f["nvidia_pkl"].read_bytes()[:3000])
    f["truncated_pkl"] = root / "truncated.pkl"
    (root / "notes.pkl").write_text("these are my notes, not a pickle\n")
    f["text_pkl"] = root / "notes.pkl"
    (root / "empty.pkl").write_bytes(b"")
    f["empty_pkl"] = root / "empty.pkl"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1000000000), }"
    (root / "huge.npy").write_bytes(
        b"\x93NUMPY\x01\x00" + len(header + "\n").to_bytes(2, "little") + (header + "\n").encode() + b"\0" * 64
    )
    f["huge_npy"] = root / "huge.npy"
    np.save(root / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    f["object_npy"] = root / "objects.npy"
    from test_e4e import e4e_reference_state, save_e4e_checkpoint

    # e4e's checkpoint layout with random weights, 2 style blocks (a 4-px generator's W+: the smallest file, 0.2 GB)
    e4e_state = e4e_reference_state(2, seed=1)
    save_e4e_checkpoint(root / "e4e.pt", e4e_state, torch.zeros(2, 512))
    f["e4e_pt"] = root / "e4e.pt"
    e4e_state["styles.1.linear.weight"][3, 4] = float("nan")
    save_e4e_checkpoint(root / "e4e-nan.pt", e4e_state, torch.zeros(2, 512))
    f["e4e_nan_pt"] = root / "e4e-nan.pt"
    del e4e_state
    save_e4e_checkpoint(root / "e4e-keys.pt", {"styles.0.linear.weight": torch.zeros(512, 512)}, torch.zeros(512))
    f["e4e_keys_pt"] = root / "e4e-keys.pt"
    from test_celeba_describer import make_celeba

    celeba = make_celeba(root / "celeba")
    victim = sorted((celeba / "Img" / "img_align_celeba").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated JPEG, found only by a DataLoader worker
    f["celeba"] = celeba
    return f


def encoder_packs(f: dict[str, Path], dcgan) -> None:
    """Copies of the pack whose encoder.safetensors is another layout, holds NaN, or serves another generator."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from magec.encoders.files import save_encoder
    from magec.encoders.network import EncoderArchitecture, MagecEncoder
    from magec.generators.stylegan2.config import StyleGAN2Config
    from magec.generators.stylegan2.model import StyleGAN2Generator

    small = EncoderArchitecture(width=8, max_width=16, extra_convs=0, hidden=16)
    root = f["root"]
    for key in ("enc_other_pack", "enc_nan_pack", "enc_res_pack"):
        shutil.copytree(f["pack"], root / key)
        f[key] = root / key
    shutil.copy(f["pack"] / "tensors.safetensors", f["enc_other_pack"] / "encoder.safetensors")  # a pack's layout
    good = save_encoder(root / "good-encoder.safetensors", MagecEncoder.for_generator(dcgan, small), dcgan)
    tensors = load_file(str(good))
    tensors["out.bias"][0] = float("nan")
    with safe_open(str(good), "pt") as fh:
        save_file(tensors, str(f["enc_nan_pack"] / "encoder.safetensors"), metadata=fh.metadata())
    tiny = StyleGAN2Generator.random(StyleGAN2Config(resolution=32, style_dim=32, channels=(16, 16, 8, 8)), seed=1)
    save_encoder(f["enc_res_pack"] / "encoder.safetensors", MagecEncoder.for_generator(tiny, small), tiny)


# ---- workspace set-ups ---------------------------------------------------------------------------------


def user_file(name: str, text: str = "my precious notes") -> Callable[[Path, dict[str, Path]], None]:
    def setup(ws: Path, f: dict[str, Path]) -> None:
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(text)

    return setup


def both(*setups: Callable[[Path, dict[str, Path]], None]) -> Callable[[Path, dict[str, Path]], None]:
    def setup(ws: Path, f: dict[str, Path]) -> None:
        for one in setups:
            one(ws, f)

    return setup


def copy_in(*pairs: tuple[str, str]) -> Callable[[Path, dict[str, Path]], None]:
    def setup(ws: Path, f: dict[str, Path]) -> None:
        for key, name in pairs:
            (ws / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f[key], ws / name)

    return setup


def three_faces(ws: Path, f: dict[str, Path]) -> None:
    copy_in(("face", "a/face.png"), ("face", "b/face.png"), ("face", "face-2.png"))(ws, f)


def check_three_faces(ws: Path, f: dict[str, Path]) -> None:
    out = ws / "out"
    for name in ("a/face", "b/face", "face-2"):
        for suffix in (".latent.safetensors", ".png", ".json"):
            assert (out / f"{name}{suffix}").is_file(), name + suffix
    index = json.loads((out / "magec-index.json").read_text())
    assert len(index["inputs"]) == 3 and all(len(v) == 3 for v in index["inputs"].values())
    for name in ("a/face.png", "b/face.png", "face-2.png"):  # the inputs are untouched
        assert (ws / name).read_bytes() == f["face"].read_bytes()


def check_kept_extensions(ws: Path, f: dict[str, Path]) -> None:
    photos = ws / "photos"
    assert (photos / "face.png.latent.safetensors").is_file() and (photos / "face.jpg.latent.safetensors").is_file()
    assert (photos / "face.png").read_bytes() == (photos / "face.jpg").read_bytes() == f["face"].read_bytes()


def check_aligned(ws: Path, f: dict[str, Path]) -> None:
    with Image.open(ws / "aligned.png") as img:
        assert img.size == (256, 256)
        arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    assert arr.std() > 20  # a face, not the flat background


def check_pack_files_mode(ws: Path, f: dict[str, Path]) -> None:
    mask = os.umask(0)
    os.umask(mask)
    for name in ("manifest.json", "tensors.safetensors"):
        assert (ws / "pack" / name).stat().st_mode & 0o777 == 0o666 & ~mask
    assert (ws / "pack").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (ws / "pack" / "my-notes.txt").read_text() == "keep me"


def pack_beside_user_file(ws: Path, f: dict[str, Path]) -> None:
    (ws / "pack").mkdir()
    (ws / "pack" / "my-notes.txt").write_text("keep me")


def sqlite_file(name: str) -> Callable[[Path, dict[str, Path]], None]:
    """A valid SQLite database that is not a study database."""

    def setup(ws: Path, f: dict[str, Path]) -> None:
        import sqlite3

        with sqlite3.connect(ws / name) as conn:
            conn.execute("CREATE TABLE notes (text TEXT)")
        conn.close()

    return setup


def empty_study_db(name: str) -> Callable[[Path, dict[str, Path]], None]:
    def setup(ws: Path, f: dict[str, Path]) -> None:
        from magec.studio.study import StudyDB

        StudyDB(ws / name, create=True)

    return setup


def truncated_study_db(name: str) -> Callable[[Path, dict[str, Path]], None]:
    """A study database cut in the middle (a disk that filled up, a copy interrupted)."""

    def setup(ws: Path, f: dict[str, Path]) -> None:
        import sqlite3

        empty_study_db(name)(ws, f)
        with sqlite3.connect(ws / name) as conn:
            conn.executemany("INSERT INTO photos (name, png) VALUES (?, ?)", [(str(i), b"x" * 4000) for i in range(50)])
        conn.close()
        data = (ws / name).read_bytes()
        (ws / name).write_bytes(data[: len(data) // 2])

    return setup


P, F, L = "{pack}", "{face}", "{latent}"
INV = ["invert", "--pack", P, "--steps-scale", "0.01", "--device", "cpu"]
EDIT = ["edit", L, "--pack", P, "--device", "cpu"]


def onnx_describer(
    model: str = "Gemm", outputs: int = 3, **layout_changes: object
) -> Callable[[Path, dict[str, Path]], None]:
    """m.onnx (a tiny graph, or one holding an unsupported ``model`` op; "" for none) and l.json beside it."""

    def setup(ws: Path, f: dict[str, Path]) -> None:
        from test_custom_describer import BRIGHT_LAYOUT, tiny_onnx

        if model:
            tiny_onnx(ws / "m.onnx", op=model, outputs=outputs)
        (ws / "l.json").write_text(json.dumps({**BRIGHT_LAYOUT, **layout_changes}))

    return setup


def hostile_onnx(ws: Path, f: dict[str, Path]) -> None:
    """m.onnx declaring 4 GiB of external weights (w.bin holds 1 MiB), with an unsupported op after them."""
    import onnx
    from onnx import TensorProto, helper

    from test_custom_describer import BRIGHT_LAYOUT

    weights = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 30], data_location=TensorProto.EXTERNAL)
    weights.external_data.add(key="location", value="w.bin")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Erf", ["x"], ["y"])], "g", [x], [y], initializer=[weights])
    onnx.save(helper.make_model(graph), str(ws / "m.onnx"))
    with open(ws / "w.bin", "wb") as fh:
        fh.truncate(1 << 20)
    (ws / "l.json").write_text(json.dumps(BRIGHT_LAYOUT))


def hostile_layout(kind: str) -> Callable[[Path, dict[str, Path]], None]:
    def setup(ws: Path, f: dict[str, Path]) -> None:
        from test_custom_describer import BRIGHT_LAYOUT, tiny_onnx

        tiny_onnx(ws / "m.onnx", op="Gemm", outputs=3)
        if kind == "deep":
            (ws / "l.json").write_text("[" * 100_000 + "]" * 100_000)
        else:  # "keys": 20,000 unknown keys (parsed in linear time); "huge": 200,000 (over the size bound)
            n = 20_000 if kind == "keys" else 200_000
            (ws / "l.json").write_text(json.dumps({**BRIGHT_LAYOUT, **{f"k{i}": i for i in range(n)}}))

    return setup


def inconsistent_model(kind: str) -> Callable[[Path, dict[str, Path]], None]:
    """m.onnx with one node its inputs do not fit (``test_custom_describer.inconsistent_onnx``), l.json beside it."""

    def setup(ws: Path, f: dict[str, Path]) -> None:
        from test_custom_describer import BRIGHT_LAYOUT, inconsistent_onnx

        inconsistent_onnx(ws / "m.onnx", kind)
        (ws / "l.json").write_text(json.dumps(BRIGHT_LAYOUT))

    return setup


#: The limits of a refusal that needs no torch (checked before it is imported).
CHEAP: dict[str, Any] = {"max_rss_mb": 500, "max_cpu_s": 2.0}

ONNX_F = [
    "prepare",
    "--no-encoder",
    "--out",
    "p",
    "--samples",
    "60",
    "--describer",
    "onnx:m.onnx:l.json",
    "--device",
    "cpu",
]


CASES: list[Case] = [
    # --- data loss (the cases) ---
    Case(
        "prepare-into-foreign-folder",
        ["prepare", "--out", "mine", "--samples", "60"],
        1,
        "holds files magec did not write",
        user_file("mine/thesis.tex"),
    ),
    Case(
        "prepare-onto-a-file",
        ["prepare", "--out", "mine.txt", "--samples", "60"],
        1,
        "is a file",
        user_file("mine.txt"),
    ),
    Case(
        "prepare-force-keeps-foreign-files",
        ["prepare", "--out", "pack", "--samples", "60", "--force", "--device", "cpu", "--no-encoder"],
        0,
        "",
        pack_beside_user_file,
        check_pack_files_mode,
    ),
    Case(
        "invert-same-stem-in-two-folders",
        ["invert", "a/face.png", "b/face.png", "face-2.png", "--out", "out", *INV[1:]],
        0,
        "",
        three_faces,
        check_three_faces,
    ),
    Case("invert-same-file-twice", ["invert", F, F, "--out", "out", *INV[1:]], 1, "given twice"),
    Case(
        "invert-init-missing-encoder",
        ["invert", F, "--init", "nowhere.safetensors", "--out", "out", *INV[1:]],
        1,
        "nowhere.safetensors: no such encoder file",
    ),
    Case(
        "invert-init-e4e-without-path",
        ["invert", F, "--init", "e4e:", "--out", "out", *INV[1:]],
        1,
        "needs the checkpoint path after the colon",
    ),
    Case(  # e4e's codes are a StyleGAN2's W+: refused for the embedded DCGAN, naming the file
        "invert-init-e4e-on-a-generator-without-w-plus",
        ["invert", F, "--init", "e4e:{e4e_pt}", "--out", "out", *INV[1:]],
        1,
        "e4e.pt: an e4e encoder gives W+ codes of a StyleGAN2, but the generator dcgan-face has no W+",
    ),
    Case(  # an e4e checkpoint given where a magec encoder file is expected (no e4e: prefix)
        "invert-init-e4e-file-without-prefix",
        ["invert", F, "--init", "{e4e_pt}", "--out", "out", *INV[1:]],
        1,
        "e4e.pt: not a readable magec encoder",
    ),
    Case(
        "invert-encoder-method-from-mean",
        ["invert", F, "--method", "encoder+magec", "--init", "mean", "--out", "out", *INV[1:]],
        1,
        "starts from an encoder",
    ),
    Case(
        "invert-over-foreign-output",
        ["invert", F, "--out", "out", *INV[1:]],
        1,
        "was not written by magec",
        both(
            user_file(
                "out/magec-index.json", json.dumps({"format": "magec-output-index", "kind": "inversion", "files": {}})
            ),
            user_file("out/face.png"),
        ),
    ),
    Case(
        "invert-into-foreign-folder",
        ["invert", F, "--out", "out", *INV[1:]],
        1,
        "holds files magec did not write",
        user_file("out/todo.txt"),
    ),
    Case(
        "invert-output-over-another-photo",
        ["invert", "photos/face.jpg", "--out", "photos", "--force", *INV[1:]],
        1,
        "was not written by magec",
        copy_in(("face", "photos/face.png"), ("face", "photos/face.jpg")),
    ),
    Case(
        "invert-same-names-keep-extensions",
        ["invert", "photos/face.png", "photos/face.jpg", "--out", "photos", "--force", *INV[1:]],
        0,
        "",
        copy_in(("face", "photos/face.png"), ("face", "photos/face.jpg")),
        lambda ws, f: check_kept_extensions(ws, f),
    ),
    Case("invert-out-is-a-file", ["invert", F, "--out", "out", *INV[1:]], 1, "is a file", user_file("out")),
    Case(
        "invert-into-another-kind",
        ["invert", F, "--out", "out", *INV[1:]],
        1,
        "holds magec edits outputs",
        user_file("out/magec-index.json", json.dumps({"format": "magec-output-index", "kind": "edits", "files": {}})),
    ),
    Case(
        "edit-into-foreign-folder",
        [*EDIT, "--out", "edits"],
        1,
        "holds files magec did not write",
        user_file("edits/holiday.jpg"),
    ),
    Case("edit-out-is-a-file", [*EDIT, "--out", "edits"], 1, "is a file", user_file("edits")),
    Case(
        "edit-amounts-share-a-file",
        [*EDIT, "--operation", "male", "--amounts", "0.001,0.002", "--out", "edits"],
        1,
        "would both be written to",
    ),
    Case(
        "preview-into-foreign-folder",
        ["preview", "--pack", P, "--out", "pv", "--device", "cpu"],
        1,
        "holds files magec did not write",
        user_file("pv/a.txt"),
    ),
    Case(
        "demo-into-foreign-folder",
        ["demo", "--out", "site", "--device", "cpu"],
        1,
        "holds files magec did not write",
        user_file("site/index.html"),
    ),
    Case(
        "align-over-foreign-file",
        ["align", F, "--out", "aligned.png", "--size", "64"],
        1,
        "was not written by magec",
        user_file("aligned.png"),
    ),
    Case(
        "align-over-its-input",
        ["align", "photo.png", "--out", "photo.png", "--force"],
        1,
        "is also an input",
        copy_in(("face", "photo.png")),
    ),
    Case(
        "convert-over-foreign-file",
        ["convert", "{garbage}", "out.safetensors"],
        1,
        "was not written by magec",
        user_file("out.safetensors"),
    ),
    Case(
        "evaluate-into-foreign-folder",
        ["evaluate", "--pack", P, "--generated", "1", "--out", "run"],
        1,
        "not a magec evaluation run",
        user_file("run/data.csv"),
    ),
    Case(
        "evaluate-report-over-foreign-md",
        ["evaluate", "--pack", P, "--generated", "1", "--out", "run", "--report", "README.md"],
        1,
        "not a magec evaluation report",
        user_file("README.md"),
    ),
    Case(
        "evaluate-report-folder-is-the-run-folder",
        ["evaluate", "--pack", P, "--generated", "1", "--out", "run", "--report", "run.md"],
        1,
        "would be the run folder",
    ),
    Case(
        "train-describer-over-foreign-file",
        ["train-describer", "celeba", "--root", "{celeba}", "--out", "model.safetensors"],
        1,
        "was not written by magec",
        user_file("model.safetensors"),
    ),
    # --- memory: large and hostile images ---
    Case(
        "align-144-megapixel-jpeg",
        ["align", "{big}", "--out", "aligned.png", "--size", "256"],
        0,
        "",
        None,
        check_aligned,
        max_rss_mb=1024,
    ),
    Case("align-size-too-large", ["align", F, "--out", "a.png", "--size", "100000"], 2, "must be at most 4096"),
    Case("align-png-bomb", ["align", "{bomb}", "--out", "a.png"], 1, "above the limit", max_rss_mb=400),
    Case("invert-png-bomb", ["invert", "{bomb}", "--out", "out", *INV[1:]], 1, "above the limit", max_rss_mb=400),
    Case(
        "invert-over-max-pixels",
        ["invert", F, "--max-pixels", "100", "--out", "out", *INV[1:]],
        1,
        "above the limit of",
    ),
    Case(
        "invert-huge-image-refused-before-models",
        ["invert", "{big}", "--max-pixels", "1000000", "--out", "out", *INV[1:]],
        1,
        "above the limit",
        max_rss_mb=400,
    ),
    Case("max-pixels-zero", ["invert", F, "--max-pixels", "0", "--out", "out", *INV[1:]], 2, "must be at least 1"),
    # --- one line instead of a traceback ---
    Case("steps-scale-nan", ["invert", F, "--out", "out", *INV[1:3], "--steps-scale", "nan"], 2, "finite"),
    Case("steps-scale-inf", ["invert", F, "--out", "out", *INV[1:3], "--steps-scale", "inf"], 2, "finite"),
    Case("steps-scale-negative", ["invert", F, "--out", "out", *INV[1:3], "--steps-scale", "-1"], 2, "greater than 0"),
    Case("lambda-magec-nan", ["invert", F, "--out", "out", *INV[1:], "--lambda-magec", "nan"], 2, "finite"),
    Case("lambda-id-negative", ["invert", F, "--out", "out", *INV[1:], "--lambda-id", "-1"], 2, "must not be negative"),
    Case(
        "invert-face-negative", ["invert", F, "--face-crop", "--face", "-5", "--out", "out", *INV[1:]], 2, "at least 0"
    ),
    Case(
        "invert-face-out-of-range", ["invert", F, "--face-crop", "--face", "5", "--out", "out", *INV[1:]], 1, "no face"
    ),
    Case("invert-batch-size-zero", ["invert", F, "--batch-size", "0", "--out", "out", *INV[1:]], 2, "at least 1"),
    Case("invert-unknown-method", ["invert", F, "--method", "magic", "--out", "out", *INV[1:]], 2, "invalid choice"),
    Case("invert-bad-device", ["invert", F, "--out", "out", *INV[1:], "--device", "gpu"], 2, "expected auto, cpu"),
    Case(
        "invert-cuda-absent", ["invert", F, "--out", "out", *INV[1:-2], "--device", "cuda"], 1, "CUDA is not available"
    ),
    Case("invert-text-as-png", ["invert", F, "{text_png}", "--out", "out", *INV[1:]], 1, "not a readable image"),
    Case("invert-empty-file", ["invert", "{empty}", "--out", "out", *INV[1:]], 1, "empty file"),
    Case("invert-truncated-png", ["invert", "{truncated}", "--out", "out", *INV[1:]], 1, "truncated"),
    Case("invert-missing-file", ["invert", "nope.jpg", "--out", "out", *INV[1:]], 1, "no such file"),
    Case(
        "invert-folder-without-images",
        ["invert", "docs", "--out", "out", *INV[1:]],
        1,
        "no images among the inputs",
        user_file("docs/notes.txt"),
    ),
    Case("invert-glob-matches-nothing", ["invert", "photos/*.jpg", "--out", "out", *INV[1:]], 1, "no file matches"),
    Case("invert-workers-zero", ["invert", F, "--workers", "0", "--out", "out", *INV[1:]], 2, "at least 1"),
    Case(
        "invert-gpus-per-worker-nan",
        ["invert", F, "--workers", "2", "--gpus-per-worker", "nan", "--out", "out", *INV[1:]],
        2,
        "finite",
    ),
    Case(
        "invert-gpus-per-worker-alone",
        ["invert", F, "--gpus-per-worker", "0.5", "--out", "out", *INV[1:]],
        1,
        "needs --workers N or --ray ADDRESS",
    ),
    Case("invert-ray-bad-address", ["invert", F, "--ray", "nowhere", "--out", "out", *INV[1:]], 2, "expected auto"),
    Case(
        "invert-ray-unreachable",
        ["invert", F, "--ray", "127.0.0.1:9", "--out", "out", *INV[1:]],
        1,
        "cannot join a Ray cluster",
    ),
    Case(
        "evaluate-workers-zero",
        ["evaluate", "--pack", P, "--generated", "1", "--out", "run", "--workers", "0"],
        2,
        "at least 1",
    ),
    Case("invert-missing-pack", ["invert", F, "--out", "out", "--pack", "nopack"], 1, "no such pack"),
    Case("invert-nan-pack", ["invert", F, "--out", "out", "--pack", "{nan_pack}", "--device", "cpu"], 1, "NaN"),
    Case(
        "invert-corrupt-pack",
        ["invert", F, "--out", "out", "--pack", "{corrupt_pack}", "--device", "cpu"],
        1,
        "SHA-256",
    ),
    Case(
        "invert-pack-encoder-other-layout",
        ["invert", F, "--out", "out", "--pack", "{enc_other_pack}", "--device", "cpu"],
        1,
        "encoder.safetensors: not a magec encoder",
    ),
    Case(
        "invert-pack-encoder-nan",
        ["invert", F, "--out", "out", "--pack", "{enc_nan_pack}", "--device", "cpu"],
        1,
        "out.bias holds NaN",
    ),
    Case(
        "invert-pack-encoder-other-resolution",
        ["invert", F, "--out", "out", "--pack", "{enc_res_pack}", "--device", "cpu"],
        1,
        "mismatched generator resolution",
    ),
    Case(
        "train-encoder-onto-foreign-file",
        ["train-encoder", "--pack", P, "--out", "mine.safetensors", "--steps", "1", "--device", "cpu"],
        1,
        "mine.safetensors: exists and was not written by magec",
        user_file("mine.safetensors"),
    ),
    Case("invert-no-face", ["invert", "{gray}", "--face-crop", "--out", "out", *INV[1:]], 1, "no face found"),
    Case(
        "invert-identity-missing",
        ["invert", F, "--identity", "arcface:missing.pth", "--out", "out", *INV[1:]],
        1,
        "missing.pth",
    ),
    Case(
        "edit-latent-broken-metadata",
        ["edit", "{latent_meta}", "--pack", P, "--out", "e", "--device", "cpu"],
        1,
        "broken magec latent metadata",
    ),
    Case(
        "edit-latent-wrong-shape", ["edit", "{latent_shape}", "--pack", P, "--out", "e", "--device", "cpu"], 1, "shape"
    ),
    Case(
        "edit-latent-wrong-space",
        ["edit", "{latent_space}", "--pack", P, "--out", "e", "--device", "cpu"],
        1,
        "latent space 'w'",
    ),
    Case("edit-latent-nan", ["edit", "{latent_nan}", "--pack", P, "--out", "e", "--device", "cpu"], 1, "NaN"),
    Case(
        "edit-latent-is-png",
        ["edit", F, "--pack", P, "--out", "e", "--device", "cpu"],
        1,
        "not a readable safetensors latent",
    ),
    Case("edit-amounts-nan", [*EDIT, "--amounts", "nan", "--out", "e"], 2, "finite"),
    Case("edit-amounts-inf", [*EDIT, "--amounts", "1,inf", "--out", "e"], 2, "finite"),
    Case("edit-amounts-overflow", [*EDIT, "--amounts", "1e400", "--out", "e"], 2, "finite"),
    Case("edit-amounts-text", [*EDIT, "--amounts", "3,big", "--out", "e"], 2, "expected a number"),
    Case("edit-paste-back-without-framing", [*EDIT, "--paste-back", F, "--out", "e"], 1, "--align or --face-crop"),
    Case(
        "edit-paste-back-other-photo",
        ["edit", "{latent_framed}", "--pack", P, "--device", "cpu", "--paste-back", "{gray}", "--out", "e"],
        1,
        "not the photo that was inverted",
    ),
    Case(
        "edit-broken-pti-delta",
        ["edit", "{latent_tuned}", "--pack", P, "--device", "cpu", "--out", "e"],
        1,
        "not a readable generator delta",
    ),
    Case(
        "edit-pti-delta-of-another-image",
        ["edit", "face.latent.safetensors", "--pack", P, "--device", "cpu", "--out", "e"],
        1,
        "face.pti.safetensors: belongs to another latent",
        copy_in(("latent_pti", "face.latent.safetensors"), ("latent_pti_other_delta", "face.pti.safetensors")),
    ),
    Case(
        "edit-pti-delta-missing",
        ["edit", "face.latent.safetensors", "--pack", P, "--device", "cpu", "--out", "e"],
        1,
        "face.pti.safetensors: missing: face.latent.safetensors was inverted with magec+pti",
        copy_in(("latent_pti", "face.latent.safetensors")),
    ),
    Case(
        "edit-pti-delta-is-a-folder",
        ["edit", "face.latent.safetensors", "--pack", P, "--device", "cpu", "--out", "e"],
        1,
        "face.pti.safetensors: is a folder, not a generator delta",
        both(copy_in(("latent_pti", "face.latent.safetensors")), user_file("face.pti.safetensors/x")),
    ),
    Case(
        "edit-pti-untuned-asked-for",
        ["edit", "face.latent.safetensors", "--untuned", "--pack", P, "--device", "cpu", "--out", "e"],
        0,
        "",
        copy_in(("latent_pti", "face.latent.safetensors")),
        lambda ws, f: (ws / "e" / "grid.png").is_file() or pytest.fail("no grid.png"),
    ),
    Case(
        "edit-boundary-huge-npy-header",
        [*EDIT, "--editor", "boundary:{huge_npy}", "--out", "e"],
        1,
        "huge.npy: declares shape (1, 1000000000)",
        max_rss_mb=500,
        max_cpu_s=2.0,
    ),
    Case(
        "edit-boundary-object-npy",
        [*EDIT, "--editor", "boundary:{object_npy}", "--out", "e"],
        1,
        "objects.npy: holds pickled Python objects",
        max_rss_mb=500,
        max_cpu_s=2.0,
    ),
    Case("edit-unknown-operation", [*EDIT, "--operation", "glasses", "--out", "e"], 1, "offers male"),
    Case("edit-unknown-editor", [*EDIT, "--editor", "styleflowish", "--out", "e"], 2, "choose from"),
    Case("edit-boundary-wrong-shape", [*EDIT, "--editor", "boundary:{garbage}", "--out", "e"], 1, "garbage.pt"),
    # hostile ONNX files and layouts are refused before torch loads: each within 2 CPU-seconds and 500 MB
    Case(
        "prepare-onnx-layout-unknown-key",
        ONNX_F,
        1,
        "unknown key 'colour' in the file",
        onnx_describer(colour=1),
        **CHEAP,
    ),
    Case("prepare-onnx-unsupported-op", ONNX_F, 1, "unsupported ONNX op 'Erf'", onnx_describer("Erf"), **CHEAP),
    Case(
        "prepare-onnx-4gb-external-weights",
        ONNX_F,
        1,
        "more than the 1073741824 magec reads",
        hostile_onnx,
        **CHEAP,
    ),
    Case(
        "prepare-onnx-layout-100000-deep",
        ONNX_F,
        1,
        "l.json: describer layout: nested too deeply",
        hostile_layout("deep"),
        **CHEAP,
    ),
    Case("prepare-onnx-layout-20000-keys", ONNX_F, 1, "unknown key 'k0'", hostile_layout("keys"), **CHEAP),
    Case("prepare-onnx-layout-200000-keys", ONNX_F, 1, "l.json: describer layout of", hostile_layout("huge"), **CHEAP),
    Case("prepare-onnx-missing-model", ONNX_F, 1, "m.onnx: missing ONNX file", onnx_describer(""), **CHEAP),
    Case("prepare-onnx-output-mismatch", ONNX_F, 1, "need (batch, 3) columns", onnx_describer(outputs=2)),
    Case(
        "prepare-onnx-missing-layout",
        ONNX_F[:-3] + ["onnx:m.onnx:none.json"],
        1,
        "missing describer layout",
        onnx_describer(),
        **CHEAP,
    ),
    # nodes their inputs do not fit: one line naming the node (the Concat's rank shows only when the graph runs)
    Case(
        "prepare-onnx-constant-without-value",
        ONNX_F,
        1,
        "m.onnx: node 'c0' (Constant): needs exactly the 'value' attribute",
        inconsistent_model("constant-without-value"),
        **CHEAP,
    ),
    Case(
        "prepare-onnx-conv-one-input",
        ONNX_F,
        1,
        "m.onnx: node 'conv0' (Conv): needs 2 or 3 inputs, has 1",
        inconsistent_model("conv-one-input"),
        **CHEAP,
    ),
    Case(
        "prepare-onnx-concat-axis-out-of-range",
        ONNX_F,
        1,
        "m.onnx: node 'cat0' (Concat): axis 5 is out of range for 2-D inputs",
        inconsistent_model("concat-axis-out-of-range"),
    ),
    Case(
        "invert-unknown-magec-editor",
        ["invert", "x.png", "--pack", "p", "--out", "o", "--magec-editor", "sefa"],
        2,
        "invalid choice",
    ),
    Case(
        "invert-styleflow-editor-without-flow",
        ["invert", "{face}", "--pack", "{pack}", "--out", "o", "--magec-editor", "styleflow"],
        1,
        "needs a pack with a StyleFlow editor",
    ),
    Case(
        "evaluate-styleflow-editor-without-flow",
        ["evaluate", "--pack", "{pack}", "--generated", "1", "--out", "r", "--magec-editor", "styleflow"],
        1,
        "needs a pack with a StyleFlow editor",
    ),
    Case("prepare-batch-size-zero", ["prepare", "--out", "p", "--batch-size", "0"], 2, "at least 1"),
    Case("prepare-samples-nan", ["prepare", "--out", "p", "--samples", "nan"], 2, "whole number"),
    Case("prepare-samples-too-few", ["prepare", "--out", "p", "--samples", "10"], 2, "at least 50"),
    Case("prepare-unknown-generator", ["prepare", "--out", "p", "--generator", "biggan"], 1, "unknown generator"),
    Case(
        "prepare-missing-checkpoint",
        ["prepare", "--out", "p", "--generator", "stylegan2:missing.pkl"],
        1,
        "missing.pkl",
    ),
    Case("prepare-malicious-pickle", ["prepare", "--out", "p", "--generator", "stylegan2:{evil}"], 1, "evil.pkl"),
    Case("prepare-seed-negative", ["prepare", "--out", "p", "--seed", "-3"], 2, "at least 0"),
    Case("preview-n-zero", ["preview", "--pack", P, "--out", "pv", "-n", "0"], 2, "at least 1"),
    Case(
        "preview-wrong-version-pack",
        ["preview", "--pack", "bad", "--out", "pv"],
        1,
        "not supported",
        user_file("bad/manifest.json", json.dumps({"format": "magec-pack", "version": 0})),
    ),
    Case("demo-generated-negative", ["demo", "--generated", "-1"], 2, "at least 0"),
    Case("demo-steps-scale-inf", ["demo", "--steps-scale", "inf"], 2, "finite"),
    Case(
        "train-describer-workers-negative",
        ["train-describer", "celeba", "--root", "r", "--out", "m.safetensors", "--workers", "-1"],
        2,
        "at least 0",
    ),
    Case(
        "train-describer-input-size-zero",
        ["train-describer", "celeba", "--root", "r", "--out", "m.safetensors", "--input-size", "0"],
        2,
        "at least 32",
    ),
    Case(
        "train-describer-epochs-negative",
        ["train-describer", "celeba", "--root", "r", "--out", "m.safetensors", "--epochs", "-1"],
        2,
        "at least 1",
    ),
    Case(
        "train-describer-bad-image-in-worker",
        [
            "train-describer",
            "celeba",
            "--root",
            "{celeba}",
            "--out",
            "m.safetensors",
            "--workers",
            "2",
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--quiet",
            "--device",
            "cpu",
        ],
        1,
        "000004.jpg",
    ),
    Case(
        "evaluate-limit-negative",
        ["evaluate", "--pack", P, "--images", "{root}", "--limit", "-1", "--out", "run"],
        2,
        "at least 1",
    ),
    Case("evaluate-generated-zero", ["evaluate", "--pack", P, "--generated", "0", "--out", "run"], 2, "at least 1"),
    Case(
        "invert-attributes-empty-name",
        ["invert", F, "--out", "out", *INV[1:], "--attributes", "male,,age"],
        2,
        "attribute names separated by commas",
    ),
    Case(
        "invert-attributes-not-in-pack",
        ["invert", F, "--out", "out", *INV[1:], "--attributes", "male,nope"],
        1,
        "nope not among the pack's attributes",
    ),
    Case(
        "evaluate-attributes-not-in-pack",
        ["evaluate", "--pack", P, "--generated", "1", "--out", "run", "--attributes", "nope"],
        1,
        "nope not among the pack's attributes",
    ),
    Case(
        "evaluate-bad-image-before-models",
        ["evaluate", "--pack", P, "--images", "imgs", "--out", "run"],
        1,
        "not a readable image",
        copy_in(("face", "imgs/a.png"), ("text_png", "imgs/b.png")),
    ),
    Case(
        "evaluate-missing-notes",
        ["evaluate", "--pack", P, "--generated", "1", "--out", "run", "--notes", "nonotes.md"],
        1,
        "no such notes file",
    ),
    Case(
        "evaluate-unknown-method",
        ["evaluate", "--pack", P, "--generated", "1", "--out", "run", "--methods", "sgd"],
        2,
        "invalid choice",
    ),
    Case(
        "evaluate-face-crop-without-images",
        ["evaluate", "--pack", P, "--generated", "1", "--out", "run", "--face-crop"],
        1,
        "need --images",
    ),
    Case(
        "evaluate-paste-back-without-framing",
        ["evaluate", "--pack", P, "--images", "{root}", "--paste-back", "--out", "run"],
        1,
        "--paste-back needs faces cut from photos",
    ),
    Case("convert-garbage", ["convert", "{garbage}", "out.safetensors"], 1, "garbage.pt"),
    Case("convert-malicious-pickle", ["convert", "{evil}", "out.safetensors"], 1, "evil.pkl"),
    Case("convert-wrong-suffix", ["convert", "{garbage}", "out.pt"], 1, "must end in .safetensors"),
    Case("bench-repeats-zero", ["bench", "--repeats", "0"], 2, "at least 1"),
    Case("bench-bad-resolutions", ["bench", "--stylegan2", "300"], 1, "powers of two"),
    Case("align-no-face", ["align", "{gray}", "--out", "a.png", "--size", "64"], 1, "no face found"),
    Case("align-face-out-of-range", ["align", F, "--out", "a.png", "--size", "64", "--face", "3"], 1, "no face"),
    Case("align-unreadable", ["align", "{text_png}", "--out", "a.png"], 1, "not a readable image"),
    # --- magec studio / magec study ---
    Case("studio-port-out-of-range", ["studio", "--port", "70000"], 2, "70000"),
    Case("studio-port-not-a-number", ["studio", "--port", "web"], 2, "--port"),
    Case("studio-bad-steps-scale", ["studio", "--steps-scale", "nan"], 2, "--steps-scale"),
    Case(
        "studio-study-db-not-sqlite",
        ["studio", "--study-db", "study.sqlite"],
        1,
        "not a study database",
        user_file("study.sqlite"),
    ),
    Case(
        "studio-study-db-users-sqlite-untouched",
        ["studio", "--study-db", "other.sqlite"],
        1,
        "not a magec study database (no table meta)",
        sqlite_file("other.sqlite"),
    ),
    Case("studio-study-db-in-missing-folder", ["studio", "--study-db", "no/such/study.sqlite"], 1, "no such folder"),
    Case("study-report-missing-db-option", ["study", "report"], 2, "--db"),
    Case("study-report-no-such-db", ["study", "report", "--db", "none.sqlite"], 1, "no such study database"),
    Case(
        "study-report-corrupted-db",
        ["study", "report", "--db", "s.sqlite"],
        1,
        "not a study database",
        user_file("s.sqlite"),
    ),
    Case(
        "study-report-foreign-sqlite",
        ["study", "report", "--db", "other.sqlite"],
        1,
        "not a magec study database",
        sqlite_file("other.sqlite"),
    ),
    Case(
        "study-report-truncated-db",
        ["study", "report", "--db", "t.sqlite"],
        1,
        "study database",
        truncated_study_db("t.sqlite"),
    ),
    Case(
        "study-report-over-foreign-csv",
        ["study", "report", "--db", "s.sqlite", "--csv", "rows.csv"],
        1,
        "was not written by magec",
        both(empty_study_db("s.sqlite"), user_file("rows.csv")),
    ),
    Case("study-prepare-missing-photo", ["study", "prepare", "--db", "s.sqlite", "nope.jpg"], 1, "no such file"),
    Case("study-prepare-unknown-size", ["study", "prepare", "--size", "huge"], 2, "invalid choice"),
    Case("study-unknown-action", ["study", "frobnicate"], 2, "invalid choice"),
    # --- magec doctor --checkpoint: opened as the loaders open it ---
    Case("doctor-checkpoint-empty", ["doctor", "--checkpoint", "{empty_pkl}"], 1, "empty.pkl: empty file"),
    Case("doctor-checkpoint-text-as-pkl", ["doctor", "--checkpoint", "{text_pkl}"], 1, "notes.pkl: not a StyleGAN2"),
    Case("doctor-checkpoint-truncated-pickle", ["doctor", "--checkpoint", "{truncated_pkl}"], 1, "truncated.pkl"),
    Case("doctor-checkpoint-missing", ["doctor", "--checkpoint", "none.pt"], 1, "none.pt: no such file"),
    Case(
        "doctor-checkpoint-rosinality",
        ["doctor", "--checkpoint", "{rosinality_pt}"],
        0,
        out="[usable] generator checkpoint",
        check=lambda ws, f: None,
    ),
    Case(
        "doctor-checkpoint-nvidia",
        ["doctor", "--checkpoint", "{nvidia_pkl}"],
        0,
        out="StyleGAN2 32x32, style_dim 32, 8-layer mapping (NVIDIA pickle, average W stored)",
    ),
    # e4e's / pSp's encoder checkpoints: recognised, checked strictly and against the generators given with them
    Case("doctor-checkpoint-e4e", ["doctor", "--checkpoint", "{e4e_pt}"], 0, out="[usable] encoder checkpoint"),
    Case(
        "doctor-checkpoint-e4e-nan", ["doctor", "--checkpoint", "{e4e_nan_pt}"], 1, "styles.1.linear.weight holds NaN"
    ),
    Case(
        "doctor-checkpoint-e4e-keys", ["doctor", "--checkpoint", "{e4e_keys_pt}"], 1, "missing key(s) e.g. input_layer"
    ),
    Case(
        "doctor-checkpoint-e4e-wrong-generator",
        ["doctor", "--checkpoint", "{rosinality_pt}", "--checkpoint", "{e4e_pt}"],
        1,
        "e4e.pt: made for a 4-px StyleGAN2 (2 W+ codes of 512), but the generator",
    ),
    Case("no-command", [], 2, "required: COMMAND"),
    Case("unknown-command", ["frobnicate"], 2, "invalid choice"),
    Case("ctrl-c-while-starting", ["invert", F, "--out", "out", *INV[1:]], 130, "", sigint_after=0.4),
]


MEASURE = """
import os, resource, subprocess, sys
cap, report, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
child = subprocess.Popen(cmd, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)))
_, status, usage = os.wait4(child.pid, 0)
open(report, "w").write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _expand(arg: str, f: dict[str, Path]) -> str:
    for key, value in f.items():
        arg = arg.replace("{" + key + "}", str(value))
    return arg


def _run(case: Case, ws: Path, f: dict[str, Path]) -> Outcome:
    ws.mkdir(parents=True)
    if case.setup:
        case.setup(ws, f)
    # No user weights (ArcFace, MoCo, ...), but the face-api files `make install` fetches, which the embedded F uses
    no_weights = ws.parent / f"{ws.name}.no-weights"  # beside the workspace: not part of its snapshot
    no_weights.mkdir()
    if face_api_dir().is_dir():
        (no_weights / face_api_dir().name).symlink_to(face_api_dir())
    before = snapshot(ws)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MAGEC_WEIGHTS": str(no_weights),
        **case.env,
    }
    env.pop("MAGEC_DEBUG", None)
    cmd = [sys.executable, "-m", "magec", *(_expand(a, f) for a in case.args)]

    rss_file = ws.parent / f"{ws.name}.rss"
    if case.max_rss_mb is not None or case.max_cpu_s is not None:
        # A small wrapper process starts magec with an address-space cap (a hard stop well above the asserted
        # peak) and reports its peak resident memory. Measured from this big test process instead, the
        # child's peak would include the pages it was forked with.
        cap = ((case.max_rss_mb or 4096) + 3072) * MiB
        cmd = [sys.executable, "-c", MEASURE, str(cap), str(rss_file), *cmd]

    with open(ws.parent / f"{ws.name}.out", "w+") as out, open(ws.parent / f"{ws.name}.err", "w+") as err:
        proc = subprocess.Popen(cmd, cwd=ws, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        if case.sigint_after is not None:
            time.sleep(case.sigint_after)
            proc.send_signal(signal.SIGINT)
        proc.wait()
        out.seek(0), err.seek(0)
        rss, cpu = rss_file.read_text().split() if rss_file.exists() else ("nan", "nan")
        return Outcome(proc.returncode, out.read(), err.read(), before, snapshot(ws), float(rss) / 1024, ws, float(cpu))


@pytest.fixture(scope="module")
def outcomes(shared, tmp_path_factory, request) -> dict[str, Outcome]:
    """Runs the cases this session selected (all of them, unless ``-k`` picks some), three at a time."""
    selected = {
        item.callspec.params["case"].id
        for item in request.session.items
        if item.path == request.path and getattr(item, "originalname", "") == "test_bad_input"
    }
    root = tmp_path_factory.mktemp("cases")
    before = snapshot(shared["root"])
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {c.id: pool.submit(_run, c, root / c.id, shared) for c in CASES if c.id in selected}
        results = {k: v.result() for k, v in futures.items()}
    assert snapshot(shared["root"]) == before, "a case changed the shared fixtures"
    assert not list(root.rglob("pwned")), "a pickle payload ran"
    assert not (shared["root"] / "module_src_ran").exists(), "an NVIDIA pickle's code ran"
    return results


def test_the_table_is_broad():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    commands = {c.args[0] for c in CASES if c.args}
    assert commands >= {
        "prepare",
        "preview",
        "invert",
        "edit",
        "evaluate",
        "bench",
        "convert",
        "align",
        "train-describer",
        "demo",
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, outcomes, shared):
    got = outcomes[case.id]
    detail = f"exit {got.code}\nstderr:\n{got.stderr}\nstdout:\n{got.stdout[-2000:]}"
    assert got.code == case.code, detail
    assert "Traceback" not in got.stderr and "unexpected" not in got.stderr, detail
    errors = [line for line in got.stderr.splitlines() if line.startswith("magec: error:")]
    if case.code in (1, 2):
        assert len(errors) == 1 and case.err in errors[0], detail
        assert got.after == got.before, f"files changed: {set(got.after.items()) ^ set(got.before.items())}"
    elif case.code == 130:
        assert got.stderr.strip().splitlines()[-1] == "magec: interrupted" and not errors, detail
    else:
        assert not errors, detail
        assert case.out in got.stdout, detail
        if case.check is not None:
            case.check(got.workspace, shared)
    if case.max_rss_mb is not None:
        assert got.max_rss_mb < case.max_rss_mb, f"peak memory {got.max_rss_mb:.0f} MiB"
    if case.max_cpu_s is not None:
        assert got.cpu_s < case.max_cpu_s, f"{got.cpu_s:.2f} CPU seconds"
