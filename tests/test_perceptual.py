"""LPIPS-VGG loads its backbone from torchvision's cache (no download); otherwise the fallback is announced."""

import logging

import pytest
import torch
import torchvision

from magec.errors import MagecError
from magec.losses.perceptual import LPIPSVGG, build_perceptual
from magec.weights import find_vgg16_weights


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_lpips_loads_backbone_from_cache(torch_home):
    assert find_vgg16_weights() is None
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None)
    torch.save(vgg.state_dict(), checkpoints / "vgg16-397923af.pth")
    loss = build_perceptual("auto", "cpu")
    assert isinstance(loss, LPIPSVGG) and loss.name == "lpips-vgg"
    # the backbone really holds the cached weights
    assert torch.equal(loss.model.net.slice1[0].weight, vgg.features[0].weight)
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(loss(x, x), torch.zeros(2), atol=1e-6)
    assert (loss(x, y) > 0).all()


@pytest.mark.slow
def test_wrong_backbone_file_is_refused(torch_home):
    bad = torch_home / "not_vgg.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(MagecError, match="not_vgg.pth"):
        build_perceptual(f"lpips-vgg:{bad}", "cpu")


def test_fallback_is_announced_never_silent(torch_home, dlib_describer, caplog):
    with caplog.at_level(logging.WARNING, logger="magec"):
        loss = build_perceptual("auto", "cpu", describer=dlib_describer)
    assert loss.name == "describer-features"
    assert "describer-features" in caplog.text and "vgg16-397923af.pth" in caplog.text
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(loss(x, x), torch.zeros(2), atol=1e-6)
    assert (loss(x, y) > 0).all()
    with pytest.raises(MagecError, match="unknown perceptual"):
        build_perceptual("vgg-something", "cpu", describer=dlib_describer)
