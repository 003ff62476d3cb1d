import shutil

import numpy as np
import pytest
import torch

from magec.describers.dlib_faces import AGE_FILE, GENDER_FILE, MANIFEST_FILE, DlibFaceDescriber
from magec.describers.onnx_graph import OnnxGraphModule
from magec.errors import MagecError
from magec.faces.chips import ChipBox, crop_chip
from magec.weights import age_gender_models_dir

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def describer():
    return DlibFaceDescriber()


def _ort_run(path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as the manifest prescribes
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("filename, size", [(GENDER_FILE, 32), (AGE_FILE, 64)])
def test_torch_nets_match_onnxruntime(describer, filename, size):
    net = describer.gender_net if filename == GENDER_FILE else describer.age_net
    rng = np.random.default_rng(5)
    # Inputs on the networks' real scale: (byte - mean) / 256, plus a few out-of-range values.
    x = ((rng.integers(0, 256, (3, 3, size, size)) - 120) / 256.0).astype(np.float32)
    x[0] *= 3.0
    ref = _ort_run(age_gender_models_dir() / filename, x)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-4
    assert not np.allclose(ref[0], ref[1])  # the inputs do produce different predictions


def test_translator_handles_gemm_options_and_default_softmax_axis(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 12)).astype(np.float32)
    b = rng.normal(size=(5,)).astype(np.float32)
    pads = np.array([0, 0, 1, 0, 0, 0, 0, 2], dtype=np.int64)
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
        helper.make_node("MaxPool", ["p"], ["m"], kernel_shape=[2, 2], strides=[1, 2]),
        helper.make_node("Flatten", ["m"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w", "b"], ["g"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["g"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 3, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"), numpy_helper.from_array(pads, "pads")],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), str(path))
    x = rng.normal(size=(2, 1, 3, 6)).astype(np.float32)
    got = OnnxGraphModule(path)(torch.from_numpy(x)).numpy()
    assert np.abs(got - _ort_run(path, x)).max() < 1e-5


def test_op_outside_allow_list_is_refused(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["y"])],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "erf.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(MagecError, match=r"erf\.onnx.*Erf"):
        OnnxGraphModule(path)


def test_corrupted_onnx_file_is_refused_with_its_name(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in (MANIFEST_FILE, GENDER_FILE):
        shutil.copy(age_gender_models_dir() / name, models / name)
    data = (age_gender_models_dir() / AGE_FILE).read_bytes()
    (models / AGE_FILE).write_bytes(data[: len(data) // 3])  # truncated download
    with pytest.raises(MagecError, match=r"age-v1\.onnx"):
        DlibFaceDescriber(models)
    (models / AGE_FILE).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(MagecError, match=r"age-v1\.onnx"):
        DlibFaceDescriber(models)


def test_bad_manifest_is_refused(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / MANIFEST_FILE).write_text('{"models": {}}')
    with pytest.raises(MagecError, match="manifest.json"):
        DlibFaceDescriber(models)


def test_layout_and_probabilities(describer):
    layout = describer.layout
    assert layout.dim == 83 and describer.spec == "dlib-age-gender"
    assert layout.head("age").class_values[:3] == (0.25, 1.0, 2.0) and layout.head("age").class_values[-1] == 80.0
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        p = describer(x)
    assert p.shape == (3, 83) and (p >= 0).all()
    for head in ("gender", "age"):
        assert torch.allclose(p[:, layout.span(head)].sum(1), torch.ones(3), atol=1e-5)
    values = layout.attribute_values(p)
    assert ((values[:, 0] >= 0) & (values[:, 0] <= 1)).all() and ((values[:, 1] >= 0.25) & (values[:, 1] <= 80)).all()


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 200, 160)])
def test_gradient_reaches_the_image(describer, shape):
    x = (torch.rand(shape, generator=torch.Generator().manual_seed(2)) * 2 - 1).requires_grad_(True)
    p = describer(x)
    values = describer.layout.attribute_values(p)
    (values[:, 0].sum() + values[:, 1].sum() / 80).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    feats = describer.features(x.detach())
    assert len(feats) == 5 and all(f.dim() == 4 and f.shape[0] == shape[0] for f in feats)


def test_whole_image_box_is_identity_at_native_size():
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    (same,) = crop_chip(x, ChipBox(0.5, 0.5, 1.0), (64,))
    assert torch.allclose(same, x, atol=1e-5)
    # An off-centre box picks the right region: the top-left quadrant, upsampled.
    (quad,) = crop_chip(x, ChipBox(0.25, 0.25, 0.5), (32,))
    assert torch.allclose(quad, x[:, :, :32, :32], atol=1e-5)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_device_agnostic(describer, device):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        ref = describer(x)
        moved = describer.to(device)
        out = moved(x.to(device))
    describer.to("cpu")
    assert out.device.type == device and moved.device.type == device
    assert torch.allclose(out.cpu(), ref, atol=1e-4)


def test_predictions_on_dcgan_faces_are_not_degenerate(describer, dcgan):
    with torch.no_grad():
        faces = dcgan.synthesize(dcgan.sample_latents(64, seed=0))
        values = describer.layout.attribute_values(describer(faces))
    male = values[:, 0] > 0.5
    assert 8 <= int(male.sum()) <= 56  # both genders occur, neither rarely
    ages = values[:, 1]
    assert ages.std() > 3 and 10 < ages.mean() < 60  # adults of varied age, not one constant
