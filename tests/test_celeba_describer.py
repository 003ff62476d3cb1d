"""CelebA 40-attribute describer: real CelebA file formats, training that learns, exact resume, strict files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from magec.cli.main import main
from magec.describers import celeba_training
from magec.describers.celeba import CELEBA_ATTRIBUTES, CelebAConfig, CelebADescriber
from magec.describers.celeba_training import DescriberTraining, load_celeba, train_celeba_describer
from magec.errors import MagecError

pytestmark = pytest.mark.usefixtures("one_thread")

N_TRAIN, N_VAL, N_TEST = 24, 6, 6


def make_celeba(root, seed: int = 0):
    """A tiny CelebA in the official layout: 178x218 JPEGs whose 8x5 grid cells are bright iff the attribute is 1."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_VAL + N_TEST
    labels = rng.integers(0, 2, size=(n, 40))
    img_dir = root / "Img" / "img_align_celeba"
    img_dir.mkdir(parents=True)
    (root / "Anno").mkdir()
    (root / "Eval").mkdir()
    rows, parts = [], []
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        # Cells cover the central 178x178 square (the describer's crop), 8 rows x 5 columns.
        arr = rng.normal(110, 20, size=(218, 178, 3))
        for k in range(40):
            r, c = divmod(k, 5)
            top = 20 + r * 22
            arr[top : top + 22, c * 35 : c * 35 + 35] += 90 if labels[i, k] else -60
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(img_dir / name, quality=95)
        rows.append(name + " " + " ".join("1" if v else "-1" for v in labels[i]))
        parts.append(f"{name} {0 if i < N_TRAIN else 1 if i < N_TRAIN + N_VAL else 2}")
    (root / "Anno" / "list_attr_celeba.txt").write_text(
        f"{n}\n" + " ".join(CELEBA_ATTRIBUTES) + "\n" + "\n".join(rows) + "\n"
    )
    (root / "Eval" / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return root


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory):
    return make_celeba(tmp_path_factory.mktemp("celeba"))


SMALL = CelebAConfig(input_size=32)


def small_training(**kw) -> DescriberTraining:
    base = dict(epochs=3, batch_size=8, lr=3e-3, workers=0, checkpoint_every=2, seed=1)
    return DescriberTraining(**(base | kw))


def test_reads_real_celeba_formats(celeba_root):
    rec = load_celeba(celeba_root)
    assert rec.attributes == CELEBA_ATTRIBUTES
    assert len(rec.files) == N_TRAIN + N_VAL + N_TEST
    assert set(rec.labels.unique().tolist()) == {0.0, 1.0}
    assert (
        len(rec.indices("train")) == N_TRAIN and len(rec.indices("val")) == N_VAL and len(rec.indices("test")) == N_TEST
    )


@pytest.mark.slow
def test_training_loss_goes_down_and_describer_round_trips(celeba_root, tmp_path):
    out = tmp_path / "celeba.safetensors"
    result = train_celeba_describer(
        celeba_root, out, SMALL, small_training(epochs=3, batch_size=12), progress=False, log=lambda s: None
    )
    losses = result.epoch_losses
    assert len(losses) == 3
    assert losses[-1] < 0.8 * losses[0], losses

    describer = CelebADescriber.load(out)
    assert describer.layout.attribute_names == list(CELEBA_ATTRIBUTES)
    assert describer.layout.dim == 40
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    p = describer(x)
    assert p.shape == (2, 40) and p.min() >= 0 and p.max() <= 1
    # Differentiable w.r.t. the image, as L_F-based inversion needs.
    x.requires_grad_(True)
    describer(x).sum().backward()
    assert x.grad.abs().sum() > 0
    assert describer.spec == f"celeba:{out}"


@pytest.mark.slow
def test_resume_reproduces_uninterrupted_run(celeba_root, tmp_path, monkeypatch):
    # 16 training images, batches of 8, a checkpoint after every batch: 2 batches per epoch.
    settings = small_training(epochs=2, limit=16, checkpoint_every=1)
    full = tmp_path / "full.safetensors"
    train_celeba_describer(celeba_root, full, SMALL, settings, progress=False, log=lambda s: None)

    # Interrupt the second run right after its first mid-epoch checkpoint (epoch 0, batch 1 of 2).
    resumed = tmp_path / "resumed.safetensors"
    original = celeba_training._save_checkpoint

    def crash_after_mid_epoch_save(path, model, opt, run_key, epoch, step, *rest):
        original(path, model, opt, run_key, epoch, step, *rest)
        if step:
            raise KeyboardInterrupt

    monkeypatch.setattr(celeba_training, "_save_checkpoint", crash_after_mid_epoch_save)
    with pytest.raises(KeyboardInterrupt):
        train_celeba_describer(celeba_root, resumed, SMALL, settings, progress=False, log=lambda s: None)
    assert not resumed.exists()
    monkeypatch.setattr(celeba_training, "_save_checkpoint", original)
    result = train_celeba_describer(celeba_root, resumed, SMALL, settings, progress=False, log=lambda s: None)
    assert result.resumed_from == (0, 1)

    a, b = load_file(str(full)), load_file(str(resumed))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)

    # Other settings cannot continue that checkpoint.
    with pytest.raises(MagecError, match="other settings"):
        train_celeba_describer(
            celeba_root,
            resumed,
            SMALL,
            small_training(epochs=3, limit=16, checkpoint_every=1, lr=1e-2),
            progress=False,
            log=lambda s: None,
        )


@pytest.mark.slow
def test_cli_trains_and_prints_per_attribute_accuracy(celeba_root, tmp_path, capsys):
    out = tmp_path / "f.safetensors"
    code = main(
        [
            "train-describer",
            "celeba",
            "--root",
            str(celeba_root),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--input-size",
            "32",
            "--batch-size",
            "8",
            "--workers",
            "0",
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert code == 0 and out.is_file()
    text = capsys.readouterr().out
    for name in CELEBA_ATTRIBUTES:
        assert name in text
    assert "mean" in text


def test_bad_attribute_file_is_refused(tmp_path):
    root = make_celeba(tmp_path / "c")
    attr = root / "Anno" / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    lines[3] = lines[3].replace("-1", "0", 1)
    attr.write_text("\n".join(lines) + "\n")
    with pytest.raises(MagecError, match=r"list_attr_celeba.txt: line 4"):
        load_celeba(root)
    with pytest.raises(MagecError, match="no such folder"):
        load_celeba(tmp_path / "nowhere")


def test_describer_file_layouts_are_checked(tmp_path):
    # Not a describer file at all.
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "something-else"})
    with pytest.raises(MagecError, match="other.safetensors: not a magec CelebA describer"):
        CelebADescriber.load(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 40)
    with pytest.raises(MagecError, match="junk.safetensors"):
        CelebADescriber.load(junk)


@pytest.mark.slow
def test_torchvision_resnet_layout_loads_strictly(tmp_path):
    from torchvision.models import resnet18, resnet34

    ref = resnet18(weights=None)  # exactly what torchvision saves as resnet18-f37072fd.pth
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(ref.state_dict(), path)
    d = CelebADescriber(CelebAConfig(arch="resnet18"))
    d.load_imagenet_backbone(path)
    torch.testing.assert_close(d.net.conv1.weight, ref.conv1.weight)
    torch.testing.assert_close(d.net.layer4[1].bn2.running_var, ref.layer4[1].bn2.running_var)
    assert d.net.fc.out_features == 40

    wrong = tmp_path / "resnet34.pth"
    torch.save(resnet34(weights=None).state_dict(), wrong)
    with pytest.raises(MagecError, match="resnet34.pth: does not match torchvision's resnet18: .*unexpected key"):
        d.load_imagenet_backbone(wrong)
