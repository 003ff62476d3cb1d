"""Honest sliders: each edit's range, name and note come from the pack (measured at prepare time), shared by the
studio and ``magec edit``; an older pack falls back to the editor's default amount and says so."""

from __future__ import annotations

import copy
import logging
from dataclasses import replace

import pytest
import torch

from magec.latent.editors import DirectionEditor
from magec.latent.reach import LEADING_OPERATIONS, ReachConfig, component_name, measure_reach
from magec.render import default_operations, slider_specs


def test_the_pack_records_every_sliders_measured_range(tone_pipeline):
    pack = tone_pipeline.pack
    measured = pack.info["sliders"]["operations"]
    multiples = pack.info["sliders"]["config"]["multiples"]
    for name, editor in pack.editors.items():
        if name == "interpolate":
            continue
        expected = editor.operations() if name == "interfacegan" else editor.operations()[:LEADING_OPERATIONS]
        assert list(measured[name]) == expected
        base = editor.default_amount
        for op, entry in measured[name].items():
            for end in (-entry["min"], entry["max"]):  # a grid amount, within the grid
                assert min(multiples) * base - 1e-3 <= end <= max(multiples) * base + 1e-3, (name, op, entry)
            if name != "interfacegan":
                assert entry["moves"]  # components are named after what they move


def test_a_slider_ends_where_the_face_stops_being_itself(tone_pipeline):
    """The measured end of each side keeps the image change within the limit (unless only the smallest grid
    amount was left), and going one grid step further would have passed it or saturated the attribute."""
    pack, gen = tone_pipeline.pack, tone_pipeline.generator
    record = pack.info["sliders"]
    limit = record["config"]["image_limit"]
    for name, ops in record["operations"].items():
        for op, entry in ops.items():
            low, high = entry["image_change"]
            smallest = min(record["config"]["multiples"]) * pack.editors[name].default_amount
            for change, end in ((low, -entry["min"]), (high, entry["max"])):
                assert change <= limit or abs(end - smallest) < 1e-3, (name, op, entry)
    # One measured end checked by hand: the RMS change over the pack's first samples, relative to unrelated faces.
    spec = next(s for s in slider_specs(tone_pipeline) if s.editor == "ganspace")
    z = gen.sample_latents(record["config"]["samples"], pack.info["prepare"]["seed"])
    with torch.no_grad():
        base = gen.synthesize(z)
        edited = gen.synthesize(pack.editors["ganspace"].edit(z, spec.operation, spec.maximum))
    rms = lambda a, b: (a - b).flatten(1).pow(2).mean(1).sqrt()
    ratio = float(rms(edited, base).mean() / rms(base, base.roll(1, 0)).median())
    assert ratio == pytest.approx(record["operations"]["ganspace"][spec.operation]["image_change"][1], abs=0.02)


def test_slider_specs_come_from_the_pack(tone_pipeline):
    specs = slider_specs(tone_pipeline)
    measured = tone_pipeline.pack.info["sliders"]["operations"]
    assert [s.key for s in specs if s.editor == "interfacegan"] == [
        ("interfacegan", a) for a in tone_pipeline.describer.layout.attribute_names
    ]
    for spec in specs:
        if spec.editor == "interpolate":
            assert (spec.minimum, spec.maximum) == (0.0, 1.0)
            continue
        entry = measured[spec.editor][spec.operation]
        assert spec.measured
        assert spec.minimum == pytest.approx(entry["min"], abs=0.005)
        assert spec.maximum == pytest.approx(entry["max"], abs=0.005)
        assert 0 < spec.step <= (spec.maximum - spec.minimum) / 20
        if spec.editor == "ganspace":
            assert spec.label == f"ganspace: {spec.operation} ({entry['moves']})"
        assert bool(spec.note) == entry["barely_moves"]
    assert len({s.elem_id for s in specs}) == len(specs)


def test_an_older_pack_falls_back_to_the_default_amount_and_says_so(tone_pipeline, caplog):
    pack = copy.copy(tone_pipeline.pack)
    pack.info = {k: v for k, v in pack.info.items() if k != "sliders"}
    with caplog.at_level(logging.WARNING, logger="magec"):
        specs = slider_specs(replace(tone_pipeline, pack=pack))
    assert sum("no measured slider ranges" in r.getMessage() for r in caplog.records) == 1  # one line
    for spec in specs:
        if spec.editor != "interpolate":
            reach = round(pack.editors[spec.editor].default_amount, 2)
            assert (spec.minimum, spec.maximum, spec.measured) == (-reach, reach, False)


def test_an_edit_that_moves_nothing_is_flagged_and_a_real_one_is_named(tone_pipeline):
    pack, gen, describer = tone_pipeline.pack, tone_pipeline.generator, tone_pipeline.describer
    real = pack.ganspace.directions[0]
    editor = DirectionEditor(["pc0", "pc1"], torch.stack([real, 1e-6 * real]), pack.ganspace.default_amount)
    spread = torch.tensor([0.3, 0.1])
    record = measure_reach(gen, describer, {"ganspace": editor}, spread, 0, ReachConfig(samples=6))
    ops = record["operations"]["ganspace"]
    assert ops["pc1"]["barely_moves"] and ops["pc1"]["moves"] == "no clear attribute"
    assert not ops["pc0"]["barely_moves"]
    top = 3.0 * pack.ganspace.default_amount  # nothing breaks: the whole grid is kept
    assert (ops["pc1"]["min"], ops["pc1"]["max"]) == (pytest.approx(-top, abs=1e-3), pytest.approx(top, abs=1e-3))


def test_component_names_read_as_what_they_move():
    assert component_name({"age": 0.9, "smile": -0.4, "male": 0.1}, 0.25) == "age +, smile -"
    assert component_name({"age": 0.1}, 0.25) == "no clear attribute"
    assert component_name({"a": 1.0, "b": -2.0, "c": 0.5}, 0.25) == "b -, a +"


def test_magec_edit_writes_every_attribute_the_studio_offers(tone_pipeline):
    studio_attributes = [s.operation for s in slider_specs(tone_pipeline) if s.editor == "interfacegan"]
    assert default_operations(tone_pipeline, "interfacegan") == studio_attributes
    assert len(default_operations(tone_pipeline, "ganspace")) == 4


def test_magec_edit_says_when_edits_go_past_the_measured_range(tone_pipeline):
    from magec.editing import beyond_range_note

    operations = default_operations(tone_pipeline, "interfacegan")
    assert beyond_range_note(tone_pipeline, "interfacegan", operations, [0.01]) is None
    note = beyond_range_note(tone_pipeline, "interfacegan", operations, [-50.0, 0.01, 50.0])
    assert note is not None and "\n" not in note and f"{2 * len(operations)} of the edits go past" in note


@pytest.mark.slow
def test_slider_ranges_are_measured_in_chunks_with_the_same_result(tone_pipeline, monkeypatch):
    """At 1024 px a dozen images at once need GBs: the measurement synthesises in budget-sized chunks."""
    from magec import memory

    gen, describer = tone_pipeline.generator, tone_pipeline.describer
    editors = {"interfacegan": tone_pipeline.pack.editors["interfacegan"]}
    spread = torch.full((len(describer.layout.attribute_names),), 0.2)
    whole = measure_reach(gen, describer, editors, spread, 0, ReachConfig(samples=5))
    sizes = []
    real_map = memory.map_chunks

    def spy(fn, n, size, **kw):
        sizes.append(size)
        return real_map(fn, n, size, **kw)

    monkeypatch.setattr(memory, "memory_budget", lambda device, share=None: memory.Budget(1, "cpu", "tiny budget"))
    monkeypatch.setattr(memory, "map_chunks", spy)
    chunked = measure_reach(gen, describer, editors, spread, 0, ReachConfig(samples=5))
    assert sizes and set(sizes) == {1}  # one image at a time under a tiny budget
    for op, entry in whole["operations"]["interfacegan"].items():
        other = chunked["operations"]["interfacegan"][op]
        assert (other["min"], other["max"]) == (entry["min"], entry["max"])
        assert other["effect_std"] == pytest.approx(entry["effect_std"], abs=2e-3)
