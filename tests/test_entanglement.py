"""The entanglement report: every editor direction's effect on every attribute, target on the diagonal."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from magec.entanglement import entanglement, write_entanglement
from magec.latent.boundaries import load_direction, load_directions


@pytest.fixture(scope="module")
def pipeline(dcgan, dlib_describer, embedded_pack):
    from magec.pipeline import assemble_pipeline

    return assemble_pipeline(dcgan, dlib_describer, copy.deepcopy(embedded_pack), "describer-features", device="cpu")


@pytest.mark.slow
def test_the_male_edit_moves_male_most(pipeline, tmp_path):
    table = entanglement(pipeline, n=120, seed=3, per_editor=2)
    assert table.columns == list(pipeline.describer.layout.attribute_names)  # every attribute of F
    assert table.columns[:3] == ["male", "age", "smile"]
    row = table.rows.index(("interfacegan", "male"))
    assert np.argmax(np.abs(table.standardised[row])) == table.columns.index("male")
    assert table.change[row][0] > 0  # towards male, as the edit says
    age = table.rows.index(("interfacegan", "age"))
    assert table.change[age][1] > 0  # the age edit makes faces older (years)
    written = write_entanglement(table, tmp_path)
    assert [p.name for p in written] == ["entanglement.csv", "entanglement.md", "entanglement.png"]
    assert "**+" in (tmp_path / "entanglement.md").read_text()  # the diagonal is marked
    assert len((tmp_path / "entanglement.csv").read_text().splitlines()) == len(table.rows) + 1


def test_exported_directions_come_back_bit_for_bit(tone_pipeline, tmp_path):
    """On the tone pack (prepares in seconds): the files do not depend on which F labelled the pack."""
    pack = tone_pipeline.pack
    pack.export_directions(tmp_path / "dirs")
    back = load_directions(tmp_path / "dirs", pack.latent_dim)
    z = tone_pipeline.generator.sample_latents(3, seed=1)
    original = pack.interfacegan.edit(z, "bright", 2.0)
    again = back["interfacegan_bright"].edit(z, "bright", 2.0)
    assert torch.equal(original, again)
    single = load_direction(tmp_path / "dirs" / "interfacegan_bright.npy", pack.latent_dim)
    assert torch.equal(single.edit(z, single.operations()[0], 2.0), original)
