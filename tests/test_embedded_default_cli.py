"""Without ``--pack``, ``magec invert`` and ``magec edit`` use the embedded default's pack in magec's one cache
(``$MAGEC_CACHE``, default ``~/.cache/magec``), saying so in one line; a bad input is still refused before the
pack is prepared."""

from __future__ import annotations

import pytest
import torch

from magec.cli.main import main
from magec.io.images import save_png


@pytest.fixture
def cache(embedded_pack, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    embedded_pack.save(folder / "embedded-pack")
    monkeypatch.setenv("MAGEC_CACHE", str(folder))
    return folder


@pytest.mark.slow
def test_invert_and_edit_use_the_embedded_pack_without_pack(cache, dcgan, tmp_path, capsys):
    with torch.no_grad():
        face = save_png(dcgan.synthesize(dcgan.sample_latents(1, seed=4242))[0], tmp_path / "face.png")
    argv = ["invert", str(face), "--out", str(tmp_path / "inv"), "--steps-scale", "0.05", "--device", "cpu"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "no --pack given" in line]
    assert lines == [f"magec: no --pack given: using the embedded default's pack {cache / 'embedded-pack'}"]
    latent = tmp_path / "inv" / "face.latent.safetensors"
    assert latent.is_file()
    assert main(["edit", str(latent), "--out", str(tmp_path / "edits"), "--amounts=2", "--device", "cpu"]) == 0
    assert "no --pack given" in capsys.readouterr().err
    written = sorted(p.name for p in (tmp_path / "edits").glob("interfacegan_*.png"))
    # every attribute of the pack's F, as the studio's sliders offer them
    from magec.pack import Pack

    attributes = Pack.load(cache / "embedded-pack").layout.attribute_names
    assert written == sorted(f"interfacegan_{a}_+2.00.png" for a in attributes)


def test_a_bad_image_is_refused_before_the_embedded_pack_is_prepared(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAGEC_CACHE", str(tmp_path / "empty-cache"))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    assert main(["invert", str(bad), "--out", str(tmp_path / "inv"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"magec: error: {bad}") and "no --pack given" not in err
    assert not (tmp_path / "empty-cache").exists()  # nothing prepared, nothing written
