"""``magec evaluate --workers``: the same CSVs as the plain single-process run.

A tiny evaluation (two generated images, two methods, one random edit per editor, the ECS re-projections,
4-step schedules) runs in the plain process (one torch thread, as every worker uses), then on 2 local Ray
workers (4 chunk-method tasks dealt to whichever is free). The run's deterministic CSVs must be
byte-identical; only ``timing.csv`` (wall-clock) may differ. The local Ray instance (2 CPUs) is started
and stopped by the module fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from magec.cli.main import main

CSVS = ("reconstruction.csv", "edits.csv", "ecs.csv")
GENERATED = ["--generated", "2"]
TINY = [
    "--methods",
    "magec",
    "no-magec",
    "--edits-per-editor",
    "1",
    "--reference-size",
    "8",
    "--steps-scale",
    "0.02",
    "--perceptual",
    "describer-features",
    "--device",
    "cpu",
    "--no-progress",
]


@pytest.fixture(scope="module")
def pack_dir(embedded_pack, tmp_path_factory) -> Path:
    return embedded_pack.save(tmp_path_factory.mktemp("pack") / "embedded")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


def _evaluate(pack: Path, out: Path, *extra: str, inputs: tuple[str, ...] = tuple(GENERATED)) -> dict[str, bytes]:
    assert main(["evaluate", "--pack", str(pack), "--out", str(out), *inputs, *TINY, *extra]) == 0
    return {name: (out / name).read_bytes() for name in CSVS}


@pytest.mark.slow
def test_evaluate_on_two_workers_writes_the_plain_run_s_csvs(local_ray, pack_dir, tmp_path):
    plain = _evaluate(pack_dir, tmp_path / "plain")
    rows = plain["reconstruction.csv"].decode().splitlines()
    assert rows[0].startswith("image,method") and len(rows) == 1 + 2 * 2  # 2 images x 2 methods
    assert plain["ecs.csv"].decode().count("\n") > 1 + 2 * 2  # several ECS edits per image and method
    out = tmp_path / "w2"
    assert _evaluate(pack_dir, out, "--workers", "2") == plain
    timing = (out / "timing.csv").read_text().splitlines()
    assert len(timing) == 1 + 2 * 2 and all(float(r.split(",")[2]) > 0 for r in timing[1:])
    assert len(list((out / "records").rglob("*.json"))) == 4


@pytest.mark.slow
def test_evaluate_face_crop_on_two_workers_writes_the_plain_run_s_csvs(local_ray, pack_dir, tmp_path):
    """--face-crop with --workers: each worker finds the same faces in the photos as the driver (the run's typed
    source description travels, not the crops), so the CSVs are the plain run's."""
    from PIL import Image
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.astronaut()).save(photos / "a.png")
    faces = ("--images", str(photos), "--face-crop", "--max-faces", "2")
    one = ("--methods", "magec", "--no-ecs")  # the framing is what is compared here; ECS has the test above
    plain = _evaluate(pack_dir, tmp_path / "plain", *one, inputs=faces)
    rows = plain["reconstruction.csv"].decode().splitlines()
    assert [r.split(",")[:2] for r in rows[1:]] == [["00000-a-face0", "magec"], ["00000-a-face1", "magec"]]
    assert _evaluate(pack_dir, tmp_path / "w2", *one, "--workers", "2", inputs=faces) == plain
