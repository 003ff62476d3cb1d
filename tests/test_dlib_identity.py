"""dlib's face-recognition ResNet in torch: file reader, descriptor vs dlib's C++, differentiable chip, ID loss."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from magec.errors import MagecError
from magec.faces.chips import CHIP_SIZE, FaceChipFinder, cut_chips
from magec.faces.crop import crop_to_chip_box
from magec.io.images import pil_to_tensor
from magec.losses.dlib_recognition import DlibFaceRecognizer, DlibIdentityLoss, read_recognition_file
from magec.losses.specs import build_identity
from magec.weights import landmarks5_file_path, recognition_file_path

dlib = pytest.importorskip("dlib")
pytestmark = pytest.mark.usefixtures("one_thread")


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _hopper() -> np.ndarray:
    """Grace Hopper's portrait, shipped as sample data inside matplotlib (found without importing it)."""
    spec = importlib.util.find_spec("matplotlib")
    path = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def net() -> DlibFaceRecognizer:
    return DlibFaceRecognizer.from_file()


@pytest.fixture(scope="module")
def dlib_models():
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(landmarks5_file_path()))
    recognizer = dlib.face_recognition_model_v1(str(recognition_file_path()))
    return detector, predictor, recognizer


def _dlib_chip(img: np.ndarray, models) -> np.ndarray:
    detector, predictor, _ = models
    faces = detector(img, 1)
    assert len(faces) >= 1
    shape = predictor(img, max(faces, key=lambda r: r.area()))
    return dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=0.25)


@pytest.fixture(scope="module")
def real_chips(dlib_models) -> dict[str, np.ndarray]:
    """dlib's own 150 x 150 chips of real faces: the astronaut, her mirror image, a tight crop of her, Grace Hopper."""
    astro = _astronaut()
    return {
        "astronaut": _dlib_chip(astro, dlib_models),
        "astronaut-flipped": _dlib_chip(np.ascontiguousarray(astro[:, ::-1]), dlib_models),
        "astronaut-cropped": _dlib_chip(np.ascontiguousarray(astro[30:260, 120:330]), dlib_models),
        "hopper": _dlib_chip(_hopper(), dlib_models),
    }


def _as_batch(chips: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()


def test_reader_finds_dlib_input_normalisation_and_metric():
    found = read_recognition_file(recognition_file_path())
    np.testing.assert_allclose(found.means, (122.782, 117.001, 104.298), atol=1e-4)  # input_rgb_image_sized's means
    assert found.distance_threshold == pytest.approx(0.6)
    assert found.margin == pytest.approx(0.04)
    # 29 conv (5,478,432 with biases) + 29 affine (2 x 3,552) + fc (256 x 128), as stored.
    assert sum(v.numel() for v in found.state.values()) == 5_614_592
    assert found.state["layer0.weight"].shape == (32, 3, 7, 7)


def test_descriptor_matches_dlib_cpp_on_real_chips(net, real_chips, dlib_models):
    recognizer = dlib_models[2]
    names = list(real_chips)
    ref = np.stack([np.array(recognizer.compute_face_descriptor(real_chips[n])) for n in names])
    with torch.no_grad():
        ours = net(_as_batch([real_chips[n] for n in names])).numpy()
    assert np.abs(ours - ref).max() < 1e-4
    # The chips behave as faces: the astronaut's variants are one person, Grace Hopper another (dlib's 0.6).
    dist = np.linalg.norm(ref[:, None] - ref[None], axis=-1)
    assert dist[0, 1] < 0.6 and dist[0, 2] < 0.6 and dist[0, 3] > 0.6


def test_descriptor_is_not_a_generic_feature(net, real_chips):
    """Guards the normalisation: dlib's /256 scaling and means, not [0, 1] or ImageNet statistics."""
    chip = _as_batch([real_chips["astronaut"]])
    with torch.no_grad():
        good = net(chip)
        net.means.zero_()
        try:
            wrong = net(chip)
        finally:
            net.means.copy_(torch.tensor([122.782, 117.001, 104.298]).view(1, 3, 1, 1))
    assert (good - wrong).norm() > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("angle", [0.0, 14.0])
def test_differentiable_chip_is_dlibs_chip(net, dlib_models, angle):
    """grid_sample at the detected chip reproduces dlib.get_face_chip (dlib truncates to bytes: < 1 grey level)."""
    img = np.asarray(Image.fromarray(_astronaut()).rotate(angle, resample=Image.Resampling.BICUBIC))
    chip = FaceChipFinder().find(img)
    assert chip is not None and abs(chip.angle) > (0.1 if angle else 0.0)
    ours = cut_chips(torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1.0, [chip])
    ref = _dlib_chip(img, dlib_models).astype(np.float32)
    diff = ours[0].permute(1, 2, 0).numpy() - ref
    assert np.abs(diff).mean() < 0.6 and np.abs(diff).max() < 1.5
    with torch.no_grad():
        assert (net(ours) - net(_as_batch([ref]))).norm() < 0.01


@pytest.fixture(scope="module")
def loss() -> DlibIdentityLoss:
    built = build_identity("dlib", "cpu")
    assert isinstance(built, DlibIdentityLoss) and built.name == "dlib"
    return built


@pytest.fixture(scope="module")
def faces64() -> dict[str, torch.Tensor]:
    """64 x 64 images as the embedded generator sees them: framed by --face-crop, and a shifted, rescaled astronaut."""
    astro = Image.fromarray(_astronaut())
    return {
        "astronaut": pil_to_tensor(crop_to_chip_box(astro, 64)),
        "astronaut-shifted": pil_to_tensor(astro.crop((150, 40, 310, 200)).resize((64, 64), Image.Resampling.LANCZOS)),
        "hopper": pil_to_tensor(crop_to_chip_box(Image.fromarray(_hopper()), 64)),
    }


def test_id_loss_is_lower_for_the_same_face(loss, faces64):
    target = faces64["astronaut"]
    same = loss(faces64["astronaut-shifted"], target).item()
    other = loss(faces64["hopper"], target).item()
    assert same < 0.6 < other  # dlib's same-person threshold separates them
    assert loss(target, target).item() < 1e-3
    # Batched: one call, per-image values equal to one-at-a-time.
    batch = loss(torch.cat([faces64["astronaut-shifted"], faces64["hopper"]]), target.expand(2, -1, -1, -1))
    torch.testing.assert_close(batch, torch.tensor([same, other]), atol=1e-5, rtol=0)


def test_gradients_reach_the_generated_image(loss, faces64):
    target = faces64["astronaut"]
    x = faces64["hopper"].clone().requires_grad_(True)
    loss(x, target).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # A small step against the gradient brings the identity closer.
    with torch.no_grad():
        before = loss(x, target).item()
        after = loss(x - 0.05 * x.grad / x.grad.abs().max(), target).item()
    assert after < before
    # Finite at the optimum (the distance's square root is guarded).
    y = target.clone().requires_grad_(True)
    loss(y, target).sum().backward()
    assert torch.isfinite(y.grad).all()


def test_targets_are_detected_once(loss, faces64, monkeypatch):
    calls = []
    original = loss.finder.find
    monkeypatch.setattr(loss.finder, "find", lambda rgb: calls.append(1) or original(rgb))
    target = faces64["hopper"] * 0.99  # a fresh target
    for _ in range(3):
        loss(faces64["astronaut"], target)
    assert len(calls) == 1


def test_no_face_falls_back_to_the_fixed_box_and_says_so_once(caplog):
    fresh = DlibIdentityLoss(DlibFaceRecognizer.from_file())
    g = torch.Generator().manual_seed(0)
    blank = torch.rand(2, 3, 64, 64, generator=g) * 0.1  # no face anywhere
    x = torch.rand(2, 3, 64, 64, generator=g, requires_grad=True)
    with caplog.at_level(logging.WARNING, logger="magec"):
        value = fresh(x, blank)
        value.sum().backward()
    assert value.shape == (2,) and torch.isfinite(value).all() and torch.isfinite(x.grad).all()
    assert fresh.fallbacks == 2
    assert sum("no face found" in r.getMessage() for r in caplog.records) == 1


def test_dlib_spec_with_a_path(tmp_path):
    link = tmp_path / "recognition.dat"
    link.symlink_to(recognition_file_path())
    built = build_identity(f"dlib:{link}", "cpu")
    assert isinstance(built, DlibIdentityLoss) and built.name == f"dlib:{link}"


def _one_line_refusal(path: Path) -> str:
    with pytest.raises(MagecError) as info:
        read_recognition_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.fixture(scope="module")
def real_bytes() -> bytes:
    return recognition_file_path().read_bytes()


def test_refuses_truncated_garbage_and_foreign_files(tmp_path, real_bytes):
    cases = {
        "truncated.dat": real_bytes[: len(real_bytes) // 3],
        "garbage.dat": bytes(range(256)) * 64,
        "empty.dat": b"",
        "trailing.dat": real_bytes + b"\x01\x00",
        "renamed-layer.dat": real_bytes.replace(b"\x05relu_", b"\x05relX_", 1),
        "wrong-stride.dat": _change_first_stride(real_bytes),
    }
    expected = {
        "truncated.dat": "truncated",
        "garbage.dat": "loss layer version",
        "empty.dat": "truncated",
        "trailing.dat": "trailing bytes",
        "renamed-layer.dat": "'relX_'",
        "wrong-stride.dat": "row stride",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert expected[name] in _one_line_refusal(path)
    # Another real dlib file (the 5-point shape predictor) is not this network.
    _one_line_refusal(landmarks5_file_path())
    assert "missing" in _one_line_refusal(tmp_path / "absent.dat")
    with pytest.raises(MagecError, match="missing"):
        DlibIdentityLoss.from_file(tmp_path / "absent.dat")


def _change_first_stride(data: bytes) -> bytes:
    """The first conv record with its row stride changed from 2 to 1 (same byte length)."""
    at = data.index(b"\x05con_4")
    # con_4, then the params tensor: version 2, dims (4736, 1, 1, 1), 4736 float32; then filters, rows, cols, stride.
    assert data[at + 6 : at + 17] == bytes.fromhex("0102028012010101010101")
    stride_at = at + 17 + 4736 * 4 + 6  # after num_filters (01 20), rows (01 07), cols (01 07)
    assert data[stride_at : stride_at + 2] == b"\x01\x02"
    return data[:stride_at] + b"\x01\x01" + data[stride_at + 2 :]


def test_auto_identity_is_dlib_for_the_embedded_generator_only(dcgan):
    from magec.pipeline import identity_for

    class OtherGenerator:
        spec = "stylegan2:ffhq.pkl"

    assert identity_for("auto", dcgan) == "dlib"
    assert identity_for("auto", OtherGenerator()) == "none"  # ArcFace / MoCo need files the user brings
    assert identity_for("arcface:ir_se50.pth", dcgan) == "arcface:ir_se50.pth"
    assert identity_for("none", dcgan) == "none"


@pytest.mark.slow
def test_default_identity_weight_brings_a_photo_projection_closer_to_the_person(dcgan, dlib_describer, embedded_pack):
    """At the paper's lambda_ID (x the network's weight_scale) the term must matter: a real face's projection
    ends nearer to the photo in dlib's metric than without it (at 3e-4 unscaled it changed nothing)."""
    from skimage import data

    from magec.inversion import invert, method_config
    from magec.pipeline import assemble_pipeline

    photo = pil_to_tensor(crop_to_chip_box(Image.fromarray(data.astronaut()), dcgan.resolution))
    meter = DlibIdentityLoss.from_file()
    distances = {}
    for identity in ("none", "auto"):
        pipe = assemble_pipeline(dcgan, dlib_describer, embedded_pack, "describer-features", identity, "cpu")
        result = invert(pipe, photo, "magec", method_config("magec", 0.5), seed=0)
        distances[identity] = float(meter(result.images, photo))
    assert distances["auto"] < distances["none"] - 0.03, distances
