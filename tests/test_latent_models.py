"""LinkNet, editors and the pack. What F's directions do is checked on the real embedded models (DCGAN + dlib's
gender/age networks, slow); the pack's format and the editors' algebra on the tone pack, which prepares in seconds."""

import json

import pytest
import torch

from magec.errors import MagecError
from magec.pack import Pack


@pytest.fixture(scope="module")
def pack(tone_pipeline) -> Pack:
    """The tone pipeline's pack (read only): the format does not depend on which F labelled it."""
    return tone_pipeline.pack


@pytest.mark.slow
def test_linknet_beats_majority_class_on_heldout(embedded_pack):
    report = embedded_pack.info["linknet"]["heldout_report"]
    assert report["male"]["agreement"] > report["male"]["majority_baseline"]
    assert report["age"]["agreement"] > report["age"]["majority_baseline"]
    assert report["age"]["pearson_r"] > 0.1
    assert set(embedded_pack.info["linknet"]["heldout_agreement"]) == set(embedded_pack.layout.attribute_names)


@pytest.mark.slow
@torch.no_grad()
def test_male_normal_raises_male_probability(embedded_pack, dcgan, dlib_describer):
    z = dcgan.sample_latents(100, seed=4321)
    edited = embedded_pack.interfacegan.edit(z, "male", embedded_pack.interfacegan.default_amount)
    layout = dlib_describer.layout
    before = layout.attribute_values(dlib_describer(dcgan.synthesize(z)))[:, 0]
    after = layout.attribute_values(dlib_describer(dcgan.synthesize(edited)))[:, 0]
    assert (after > before).float().mean() >= 0.8


@pytest.mark.slow
@torch.no_grad()
def test_top_ganspace_direction_changes_images_more_than_random(pack, dcgan):
    gs = pack.ganspace  # fitted on the DCGAN's activations: F plays no part
    z = dcgan.sample_latents(64, seed=99)
    amount = gs.default_amount
    base = dcgan.synthesize(z)
    top = (dcgan.synthesize(gs.edit(z, "pc0", amount)) - base).square().mean()
    g = torch.Generator().manual_seed(5)
    random_changes = []
    for _ in range(5):
        d = torch.nn.functional.normalize(torch.randn(z.shape[1], generator=g), dim=0)
        random_changes.append((dcgan.synthesize(z + amount * d) - base).square().mean())
    assert top > max(random_changes)


def test_interfacegan_edit_is_differentiable_and_invertible(pack):
    z = torch.randn(3, 100, requires_grad=True)
    out = pack.interfacegan.edit(z, "redness", 2.0)
    out.sum().backward()
    assert z.grad is not None
    back = pack.interfacegan.edit(out, "redness", -2.0)
    assert torch.allclose(back, z, atol=1e-6)
    w_plus = torch.randn(2, 5, 100)
    assert pack.interfacegan.edit(w_plus, "bright", 1.0).shape == w_plus.shape


def test_pack_round_trips_bit_exactly(pack, tmp_path):
    first = pack.save(tmp_path / "a")
    loaded = Pack.load(first)
    second = loaded.save(tmp_path / "b")
    for name in ("manifest.json", "tensors.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    for key, value in pack.tensors().items():
        assert torch.equal(value, loaded.tensors()[key])
    manifest = json.loads((first / "manifest.json").read_text())
    assert 0 <= manifest["linknet"]["heldout_agreement"]["bright"] <= 1
    assert manifest["created_with"]["torch"]


def test_corrupted_pack_is_refused(pack, tmp_path):
    folder = pack.save(tmp_path / "p")
    tensors = folder / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-10] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(MagecError, match="SHA-256"):
        Pack.load(folder)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: m.update(version=99), "version 99"),
        (lambda m: m.update(format="other"), "not a magec pack"),
        (lambda m: m["tensors"]["shapes"].update({"linknet.linear.weight": [1, 1]}), "shape"),
    ],
)
def test_mismatched_manifest_is_refused(pack, tmp_path, mutate, message):
    folder = pack.save(tmp_path / "p")
    manifest = json.loads((folder / "manifest.json").read_text())
    mutate(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MagecError, match=message):
        Pack.load(folder)


def test_garbage_manifest_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(MagecError, match="manifest.json: corrupted"):
        Pack.load(tmp_path)
    with pytest.raises(MagecError, match="no such pack"):
        Pack.load(tmp_path / "missing")


@pytest.mark.slow
def test_prepare_is_deterministic_per_seed(dcgan, dlib_describer):
    from magec.prepare import PrepareConfig, prepare_pack

    def fit(seed):
        return prepare_pack(
            dcgan, dlib_describer, PrepareConfig(n_samples=250, ganspace_samples=100, seed=seed), progress=False
        ).tensors()

    a, b, c = fit(1), fit(1), fit(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["linknet.linear.weight"], c["linknet.linear.weight"])
