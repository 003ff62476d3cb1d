"""Pivotal tuning: it brings back the photo, the pivot's edits keep working, and the tuned generator is stored
as a delta that only applies to the generator it was tuned from."""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image
from skimage import data

from magec.errors import MagecError
from magec.faces.crop import crop_to_chip_box
from magec.generators.delta import apply_delta, fingerprint, save_delta, weight_delta
from magec.inversion import invert, method_config
from magec.inversion.pti import PTIConfig
from magec.io.images import pil_to_tensor
from magec.losses.mse import mse_per_image

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def astronaut(dcgan):
    return pil_to_tensor(crop_to_chip_box(Image.fromarray(data.astronaut()), dcgan.resolution))


@pytest.fixture(scope="module")
def embedded_pipeline(dcgan, dlib_describer, embedded_pack):
    from magec.pipeline import assemble_pipeline

    return assemble_pipeline(dcgan, dlib_describer, copy.deepcopy(embedded_pack), "describer-features", device="cpu")


@pytest.mark.slow
def test_pti_lowers_the_reconstruction_error_of_a_photo(tone_pipeline, astronaut):
    config = method_config("magec", steps_scale=0.2)
    seen = []
    result = invert(
        tone_pipeline, astronaut, "magec+pti", config, pti=PTIConfig(steps=60), callback=lambda i: seen.append(i)
    )
    pivot_image = tone_pipeline.generator.synthesize(result.latents)
    before = float(mse_per_image(pivot_image, astronaut))
    after = float(mse_per_image(result.images, astronaut))
    assert after < 0.7 * before, (before, after)
    assert result.tuned is not None and len(result.tuned) == 1
    generator_steps = [i for i in seen if i.target == "generator"]
    assert len(generator_steps) == 60 and seen[-1].step == seen[-1].total_steps - 1
    # the base generator was not touched
    assert torch.equal(tone_pipeline.generator.synthesize(result.latents), pivot_image)


@pytest.mark.slow
def test_edits_of_the_pivot_still_work_on_the_tuned_generator(embedded_pipeline, dcgan):
    faces = dcgan.synthesize(dcgan.sample_latents(4, seed=808)).detach()
    result = invert(embedded_pipeline, faces, "magec+pti", method_config("magec", 0.25), pti=PTIConfig(steps=50))
    editor, describer = embedded_pipeline.pack.interfacegan, embedded_pipeline.describer
    raised = 0
    for i, tuned in enumerate(result.tuned):
        z = result.latents[i : i + 1]
        p = [
            describer.layout.attribute_values(describer(tuned.synthesize(c)))[0, 0]
            for c in (z, editor.edit(z, "male", 3.0))
        ]
        raised += int(p[1] > p[0])
    assert raised >= 3


def test_delta_round_trips_and_refuses_another_base(tone_pipeline, astronaut, tmp_path):
    result = invert(tone_pipeline, astronaut, "magec+pti", method_config("magec", 0.05), pti=PTIConfig(steps=5))
    base, tuned = tone_pipeline.generator, result.tuned[0]
    delta = weight_delta(base, tuned)
    assert delta and len(delta) <= len(base.state_dict())
    path = save_delta(tmp_path / "x.pti.safetensors", delta, base)
    again = apply_delta(base, path)
    z = result.latents
    assert torch.equal(again.synthesize(z), tuned.synthesize(z))
    other = copy.deepcopy(base)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert fingerprint(other) != fingerprint(base)
    with pytest.raises(MagecError, match="tuned from another generator"):
        apply_delta(other, path)
    (tmp_path / "junk.pti.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(MagecError, match="not a readable generator delta"):
        apply_delta(base, tmp_path / "junk.pti.safetensors")


def test_pti_settings_are_validated():
    with pytest.raises(MagecError):
        PTIConfig(steps=0)
    with pytest.raises(MagecError):
        PTIConfig(lr=float("nan"))
    assert PTIConfig().scaled(0.1).steps == 35


def _pair(folder, base, name: str, seed: int, method: str = "magec+pti"):
    """A +pti latent and its delta, as `magec invert` writes them (the delta records the latent's SHA-256)."""
    from magec.inversion.outputs import delta_path_for, save_latent
    from magec.io.hashing import sha256_file

    folder.mkdir(parents=True, exist_ok=True)
    z = base.sample_latents(1, seed=seed)
    latent = save_latent(folder / f"{name}.latent.safetensors", z, "z", None, None, {"method": method})
    tuned = copy.deepcopy(base)
    with torch.no_grad():
        next(tuned.parameters()).add_(0.01 * seed)
    save_delta(delta_path_for(latent), weight_delta(base, tuned), base, latent_sha256=sha256_file(latent))
    return latent


def test_a_delta_is_used_only_with_the_latent_it_was_tuned_for(dcgan, tmp_path):
    from magec.inversion.outputs import check_tuned_pair, delta_path_for, tuned_generator_for

    base = dcgan
    a, b = _pair(tmp_path / "a", base, "face", 1), _pair(tmp_path / "b", base, "face", 2)
    assert check_tuned_pair(a) == delta_path_for(a)
    first = tuned_generator_for(a, base)
    assert not torch.equal(next(first.parameters()), next(base.parameters()))
    # Another image's delta beside the latent: refused, not used.
    delta_path_for(a).write_bytes(delta_path_for(b).read_bytes())
    with pytest.raises(MagecError, match="belongs to another latent, not to face.latent.safetensors; or --untuned"):
        tuned_generator_for(a, base)
    assert check_tuned_pair(a, untuned=True) is None  # asked for explicitly
    # Missing: the latent says it was tuned.
    delta_path_for(a).unlink()
    with pytest.raises(MagecError, match="missing: face.latent.safetensors was inverted with magec\\+pti"):
        check_tuned_pair(a)
    # A folder in its place.
    delta_path_for(a).mkdir()
    with pytest.raises(MagecError, match="is a folder, not a generator delta"):
        check_tuned_pair(a)
    delta_path_for(a).rmdir()
    # Written before deltas recorded their latent: refused with how to proceed.
    save_delta(delta_path_for(a), {}, base)
    with pytest.raises(MagecError, match="records no latent it belongs to.*again with a \\+pti method"):
        check_tuned_pair(a)
    # A plain latent with no delta beside it is simply untuned.
    plain = _pair(tmp_path / "c", base, "plain", 3, method="magec")
    delta_path_for(plain).unlink()
    assert check_tuned_pair(plain) is None and tuned_generator_for(plain, base) is None
