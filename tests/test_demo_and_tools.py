"""The main job and the helper tools, run small: face crop for the generator, demo, bench."""

import json

import pytest
from PIL import Image

from magec.cli.main import main
from magec.faces.chips import DCGAN_CHIP
from magec.faces.crop import astronaut_face, detect_chip


@pytest.mark.slow
def test_face_crop_puts_dlib_chip_on_the_generator_box():
    crop = astronaut_face(256)
    cx, cy, side, angle = detect_chip(crop)
    assert abs(cx / 256 - DCGAN_CHIP.center_x) < 0.02
    assert abs(cy / 256 - DCGAN_CHIP.center_y) < 0.02
    assert abs(side / 256 - DCGAN_CHIP.size) < 0.03
    assert abs(angle) < 0.05


def test_face_crop_without_a_face_is_refused():
    from magec.errors import MagecError
    from magec.faces.crop import crop_to_chip_box

    with pytest.raises(MagecError, match="no face"):
        crop_to_chip_box(Image.new("RGB", (120, 120), (40, 40, 40)), 64)


@pytest.mark.slow
def test_demo_writes_a_self_contained_page(tmp_path):
    out = tmp_path / "demo"
    args = [
        "demo",
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "cache"),
        "--generated",
        "1",
        "--samples",
        "300",
        "--steps-scale",
        "0.02",
        "--perceptual",
        "describer-features",
        "--no-encoder",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    page = (out / "index.html").read_text()
    # reconstructions, one grid per editor (InterfaceGAN, GANSpace, SeFa, StyleFlow, interpolation), losses and
    # the photo pasted back: all inlined
    assert page.count("data:image/png;base64,") == 8
    for method in ("magec", "no-magec", "im2stylegan++"):
        assert method in page
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"magec", "no-magec", "im2stylegan++"}
    back = summary["astronaut_pasted_back"]
    assert set(back) == {"magec", "no-magec", "im2stylegan++", "magec+pti", "no-magec+pti"}
    assert all(0 <= v["projection"] < 2 for v in back.values())  # dlib found her face in every pasted photo
    assert set(summary["methods"]["magec"]["final_mse"]) == {"astronaut", "generated-0"}
    assert (tmp_path / "cache" / "embedded-pack" / "manifest.json").is_file()
    _add_tiny_encoder(tmp_path / "cache" / "embedded-pack")
    assert main(args) == 0  # second run reuses the cached pack, now with its encoder: issue 21
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"magec", "no-magec", "im2stylegan++", "encoder", "encoder+magec"}
    assert summary["methods"]["encoder"]["steps"] == 0 and summary["methods"]["encoder+magec"]["steps"] > 0
    assert all(summary["methods"][m]["seconds_per_image"] >= 0 for m in ("encoder", "encoder+magec"))
    page = (out / "index.html").read_text()
    assert "<td>encoder</td>" in page and "<td>encoder+magec</td>" in page  # in the table, with s / image


def _add_tiny_encoder(folder):
    """A few steps of a small encoder as the pack's own (the embedded one trains for 2 minutes)."""
    from magec.encoders.files import save_encoder
    from magec.encoders.names import PACK_ENCODER
    from magec.encoders.network import EncoderArchitecture
    from magec.encoders.training import EncoderTrainingConfig
    from magec.pipeline import load_pipeline
    from magec.prepare import train_pack_encoder

    small = EncoderArchitecture(width=16, max_width=64, extra_convs=0, hidden=128)
    config = EncoderTrainingConfig(steps=2, batch_size=4, heldout=4, architecture=small)
    p = load_pipeline(folder, "cpu", perceptual="describer-features", identity="none", with_encoder=False)
    result = train_pack_encoder(p.generator, p.describer, p.pack, p.perceptual, config)
    save_encoder(folder / PACK_ENCODER, result.encoder, p.generator, result.report, result.training)


@pytest.mark.slow
def test_bench_reports_every_figure(embedded_pack, dcgan, dlib_describer):
    from magec.bench import run_bench
    from magec.pipeline import assemble_pipeline

    pipeline = assemble_pipeline(dcgan, dlib_describer, embedded_pack, perceptual="describer-features", device="cpu")
    result = run_bench(pipeline, repeats=1)
    assert set(result["step_ms"]) == {"magec", "no-magec", "im2stylegan++"}
    assert set(result["magec_share"]) == {"1", "40"} and all(0 < v < 1 for v in result["magec_share"].values())
    assert set(result["images_per_s"]) == {"1", "4", "16"}
    assert result["encoder_ms_per_image"]["8"] > 0
    json.dumps(result)
