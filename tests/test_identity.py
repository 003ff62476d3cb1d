"""ID losses read the exact third-party checkpoint layouts strictly and refuse anything else."""

from __future__ import annotations

import pickle

import pytest
import torch

from magec.errors import MagecError
from magec.losses.identity import ArcFaceIRSE50, MocoResNet50
from magec.losses.specs import build_identity

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomise_bn(module: torch.nn.Module, seed: int) -> None:
    """Give BatchNorm non-trivial statistics so a load that silently skipped them would show."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory):
    torch.manual_seed(0)
    model = ArcFaceIRSE50()
    _randomise_bn(model, 1)
    path = tmp_path_factory.mktemp("w") / "model_ir_se50.pth"
    torch.save(model.net.state_dict(), path)
    return path, model


def test_arcface_checkpoint_has_the_pSp_layout(arcface_file):
    path, _ = arcface_file
    state = torch.load(path, weights_only=True)
    # Keys and shapes of pSp/e4e's Backbone(50, mode='ir_se') as found in model_ir_se50.pth.
    assert state["input_layer.0.weight"].shape == (64, 3, 3, 3)
    assert state["input_layer.2.weight"].shape == (64,)  # PReLU
    assert "body.0.shortcut_layer.0.weight" not in state  # 64 -> 64: max-pool shortcut, no weights
    assert state["body.3.shortcut_layer.0.weight"].shape == (128, 64, 1, 1)
    assert state["body.3.res_layer.3.weight"].shape == (128, 128, 3, 3)
    assert state["body.23.res_layer.5.fc1.weight"].shape == (32, 512, 1, 1)
    assert state["body.23.res_layer.5.fc2.weight"].shape == (512, 32, 1, 1)
    assert "body.24.res_layer.0.weight" not in state  # 3 + 4 + 14 + 3 = 24 units
    assert state["output_layer.3.weight"].shape == (512, 512 * 7 * 7)
    assert state["output_layer.4.running_var"].shape == (512,)


@pytest.mark.slow
def test_arcface_loads_strictly_and_measures_identity(arcface_file):
    path, ref = arcface_file
    loss = build_identity(f"arcface:{path}", "cpu")
    assert isinstance(loss, ArcFaceIRSE50)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    torch.testing.assert_close(loss.embed(x), ref.embed(x))
    same = loss(x, x)
    assert same.shape == (2,) and same.abs().max() < 1e-5
    x.requires_grad_(True)
    d = loss(x, y)
    assert (d > 1e-4).all()
    d.sum().backward()
    assert x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())


@pytest.mark.slow
def test_arcface_without_batch_counters_still_loads(arcface_file, tmp_path):
    path, ref = arcface_file
    state = {k: v for k, v in torch.load(path, weights_only=True).items() if not k.endswith("num_batches_tracked")}
    old = tmp_path / "old_torch.pth"
    torch.save(state, old)
    x = torch.rand(1, 3, 112, 112) * 2 - 1
    torch.testing.assert_close(ArcFaceIRSE50.from_checkpoint(old).embed(x), ref.embed(x))


@pytest.mark.slow
def test_arcface_wrong_layout_is_refused(arcface_file, tmp_path):
    path, _ = arcface_file
    state = torch.load(path, weights_only=True)
    renamed = {k.replace("body.", "layers."): v for k, v in state.items()}
    bad = tmp_path / "renamed.pth"
    torch.save(renamed, bad)
    with pytest.raises(
        MagecError,
        match=r"renamed.pth: does not match the ArcFace IR-SE50 layout .*missing key.*body\.0\."
        r".*unexpected key.*layers\.0\.",
    ):
        build_identity(f"arcface:{bad}")
    state["output_layer.3.weight"] = torch.zeros(512, 512 * 14 * 14)  # the 224-input variant
    wide = tmp_path / "ir_se50_224.pth"
    torch.save(state, wide)
    with pytest.raises(MagecError, match=r"ir_se50_224.pth: .*output_layer.3.weight has shape"):
        build_identity(f"arcface:{wide}")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    evil = tmp_path / "model_ir_se50.pth"
    with open(evil, "wb") as f:
        pickle.dump({"input_layer.0.weight": _Evil()}, f, protocol=2)
    with pytest.raises(MagecError, match="model_ir_se50.pth: not loadable .* safe loader"):
        build_identity(f"arcface:{evil}")
    with pytest.raises(MagecError, match="no such file"):
        build_identity(f"arcface:{tmp_path / 'absent.pth'}")


def _moco_checkpoint(seed: int) -> tuple[dict, torch.nn.Module]:
    """The layout of moco_v2_800ep_pretrain.pth.tar: encoder_q/encoder_k ResNet-50s with a 2-layer MLP head."""
    from torchvision.models import resnet50

    torch.manual_seed(seed)
    encoder = resnet50(weights=None)
    _randomise_bn(encoder, seed)
    encoder.fc = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 128))
    state = {}
    for k, v in encoder.state_dict().items():
        state[f"module.encoder_q.{k}"] = v
        state[f"module.encoder_k.{k}"] = v.clone()
    state["module.queue"] = torch.randn(128, 16)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    ckpt = {
        "epoch": 800,
        "arch": "resnet50",
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "momentum": 0.9, "params": [0]}]},
    }
    return ckpt, encoder


@pytest.mark.slow
def test_moco_loads_encoder_q_strictly(tmp_path):
    ckpt, encoder = _moco_checkpoint(5)
    path = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
    torch.save(ckpt, path)
    loss = build_identity(f"moco:{path}")
    assert isinstance(loss, MocoResNet50)
    torch.testing.assert_close(loss.net.layer4[2].conv3.weight, encoder.layer4[2].conv3.weight)
    torch.testing.assert_close(loss.net.bn1.running_var, encoder.bn1.running_var)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 96, 128, generator=g) * 2 - 1  # non-square, like Stanford Cars
    y = torch.rand(1, 3, 96, 128, generator=g) * 2 - 1
    assert loss.embed(x).shape == (1, 2048)  # pooled features, the MLP head is dropped
    assert float(loss(x, x)) < 1e-5 and float(loss(x, y)) > 1e-6

    # A plain torchvision ResNet-50 (no module.encoder_q. prefix) is not a MoCo checkpoint.
    plain = tmp_path / "resnet50.pth"
    torch.save(
        {
            "state_dict": {
                k[len("module.encoder_q.") :]: v
                for k, v in ckpt["state_dict"].items()
                if k.startswith("module.encoder_q.")
            }
        },
        plain,
    )
    with pytest.raises(MagecError, match=r"resnet50.pth: no 'module.encoder_q.\*' keys"):
        build_identity(f"moco:{plain}")
    # A MoCo v1-style checkpoint of another depth fails the strict load.
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if "layer4.2." not in k}
    short = tmp_path / "short.pth.tar"
    torch.save(ckpt, short)
    with pytest.raises(
        MagecError, match=r"short.pth.tar: does not match a torchvision ResNet-50 .*missing key.*layer4\.2\."
    ):
        build_identity(f"moco:{short}")


def test_identity_specs(tmp_path, monkeypatch):
    assert build_identity("none") is None
    with pytest.raises(MagecError, match="unknown kind 'facenet'"):
        build_identity("facenet:x.pth")
    monkeypatch.setenv("MAGEC_WEIGHTS", str(tmp_path))
    with pytest.raises(MagecError, match=rf"{tmp_path}/model_ir_se50.pth: no such file.*magec doctor"):
        build_identity("arcface")
