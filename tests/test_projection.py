"""One record of an inverted image, one writer of its files, and the folder run as a library call.

``magec invert`` and the studio's downloads write a projection through ``save_projection``: the same latent and
tuned-generator pair, which ``magec edit`` reads back the same way. ``magec.invert_folder`` is what ``magec
invert`` runs, usable from Python, and resumes a folder as the command does.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

import magec
from magec.inversion.config import PTI_SUFFIX
from magec.inversion.optimizer import InversionResult
from magec.inversion.outputs import check_tuned_pair, load_latent, tuned_generator_for, write_inversion_outputs
from magec.io.images import save_png
from magec.studio.session import Projection


def _tuned_copy(generator):
    """The generator with one weight changed, as pivotal tuning changes it."""
    tuned = copy.deepcopy(generator)
    name, tensor = next(iter(tuned.state_dict().items()))
    with torch.no_grad():
        tensor.add_(0.01)
    return tuned, name


def test_the_studio_and_magec_invert_write_one_projection_the_same_way(studio, tmp_path):
    gen = studio.pipeline.generator
    latent = gen.sample_latents(1, 7)
    with torch.no_grad():
        source = gen.synthesize(latent).clamp(-1, 1)
    tuned, changed = _tuned_copy(gen)
    shown = Projection("magec+pti", latent, "z", None, source, 12, 1.5, False, tuned=tuned)
    result = InversionResult(latent, "z", None, source, steps=12, seconds=1.5, method="magec+pti", tuned=[tuned])
    inverted = result.projection(0, source)
    assert (inverted.method, inverted.space, inverted.tuned) == (shown.method, shown.space, shown.tuned)

    cli = write_inversion_outputs(tmp_path / "inv", ["face"], source, result, {"request": {}}, base=gen)
    page = studio.downloads(shown, {})
    cli_pair = [p for p in cli if p.name.endswith((".latent.safetensors", PTI_SUFFIX))]
    page_pair = [p for p in page if p.name.endswith((".latent.safetensors", PTI_SUFFIX))]
    assert [p.name for p in cli_pair] == ["face.latent.safetensors", f"face{PTI_SUFFIX}"]
    assert [p.name for p in page_pair] == ["studio-magec+pti.latent.safetensors", f"studio-magec+pti{PTI_SUFFIX}"]

    for latent_file in (cli_pair[0], page_pair[0]):  # what `magec edit` reads: the same projection from both
        back = load_latent(latent_file)
        assert back.method == "magec+pti" and back.space == "z" and torch.equal(back.latent, latent)
        assert back.source.shape == source.shape and (back.source - source).abs().max() <= 1 / 127.5
        again = tuned_generator_for(latent_file, gen)
        assert torch.equal(again.state_dict()[changed], tuned.state_dict()[changed])
    # each tuned generator records its own latent: swapped beside the other one, it is refused
    os.replace(page_pair[1], cli_pair[1])
    with pytest.raises(magec.MagecError, match="belongs to another latent"):
        check_tuned_pair(cli_pair[0])


@pytest.fixture(scope="module")
def pack_dir(embedded_pack, tmp_path_factory):
    return embedded_pack.save(tmp_path_factory.mktemp("pack") / "embedded")


@pytest.mark.slow
def test_a_python_user_inverts_a_folder_and_a_rerun_resumes(pack_dir, dcgan, tmp_path):
    photos = tmp_path / "photos"
    with torch.no_grad():
        faces = dcgan.synthesize(dcgan.sample_latents(3, seed=404))
    for i, face in enumerate(faces):
        save_png(face, photos / f"face{i}.png")
    settings = magec.FolderSettings(
        method="no-magec",
        pack=str(pack_dir),
        steps_scale=0.02,
        batch_size=2,
        perceptual="describer-features",
        identity="none",
        device="cpu",
    )
    steps, written = [], []
    out = tmp_path / "out"
    first = magec.invert_folder(
        [photos], out, settings, callback=lambda info: steps.append(info.step), show=written.append
    )
    assert (first.wrote, first.finished, first.failed) == (3, 0, {})
    assert steps and sum(line.startswith("wrote ") for line in written) == 3
    assert load_latent(out / "face2.latent.safetensors").method == "no-magec"

    kept = (out / "face0.latent.safetensors").stat().st_mtime_ns
    (out / "face2.json").unlink()  # an interrupted run: face2 is not finished
    written.clear()
    again = magec.invert_folder([photos], out, settings, callback=lambda info: None, show=written.append)
    assert (again.wrote, again.finished) == (1, 2)
    assert [line for line in written if line.startswith("wrote ")] == [
        f"wrote {out / 'face2'}.{{latent.safetensors,png,json}}"
    ]
    assert (out / "face0.latent.safetensors").stat().st_mtime_ns == kept and (out / "face2.json").is_file()
