"""Folders, resuming and many workers (Ray) for ``magec invert``.

The fast tests need no Ray: input discovery, resume bookkeeping, per-image failures inside a batch, and
that ``import magec`` / ``magec --help`` never import Ray. The slow ones run a local Ray instance with two
CPUs (started and stopped by the module fixture) and check the issue's promises: the same bytes with 1 or
2 workers as in the plain process, a worker killed mid-run, a corrupt image among good ones, a Ctrl-C'd
run resumed without redoing anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from magec.cli.main import main
from magec.inversion.config import method_config
from magec.inversion.folder import (
    FolderJob,
    FramingOptions,
    Item,
    collect_inputs,
    deal_batches,
    invert_batch,
    is_finished,
    output_claims,
)
from magec.inversion.outputs import load_latent
from magec.io.images import save_png

SRC = Path(__file__).resolve().parents[1] / "src"
INV = ["--steps-scale", "0.05", "--batch-size", "2", "--perceptual", "describer-features", "--device", "cpu"]


@pytest.fixture(scope="module")
def pack_dir(embedded_pack, tmp_path_factory):
    return embedded_pack.save(tmp_path_factory.mktemp("pack") / "embedded")


@pytest.fixture(scope="module")
def faces(dcgan, tmp_path_factory) -> Path:
    """Eight generated faces in a folder tree, plus a text file that is not an image."""
    root = tmp_path_factory.mktemp("faces") / "faces"
    with torch.no_grad():
        images = dcgan.synthesize(dcgan.sample_latents(8, seed=77))
    for i in range(8):
        save_png(images[i], root / ("sub" if i % 3 == 0 else "") / f"f{i}.png")
    (root / "notes.txt").write_text("not an image")
    return root


def outputs(out: Path) -> dict[str, bytes]:
    """Every latent and reconstruction under ``out`` (relative name -> bytes)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.name.endswith((".latent.safetensors", ".png"))
    }


@pytest.fixture(scope="module")
def reference(faces, pack_dir, tmp_path_factory) -> Path:
    """The plain single-process run (one torch thread, as every worker uses)."""
    out = tmp_path_factory.mktemp("ref") / "out"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["invert", str(faces), "--pack", str(pack_dir), "--out", str(out), *INV]) == 0
    finally:
        torch.set_num_threads(before)
    return out


# ---- no Ray needed ---------------------------------------------------------------------------------------


def test_folders_and_globs_are_expanded_sorted_and_images_only(tmp_path):
    for name in ("b/2.png", "b/1.JPG", "a.png", "c/deep/x.webp", "c/readme.md", ".hidden/h.png", "out/old.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = collect_inputs([str(tmp_path)], exclude=tmp_path / "out")
    rel = [p.relative_to(tmp_path).as_posix() for p in found.files]
    assert rel == ["a.png", "b/1.JPG", "b/2.png", "c/deep/x.webp"]
    assert [p.name for p in found.not_images] == ["readme.md"] and not found.explicit
    globbed = collect_inputs([str(tmp_path / "**" / "*.png")], exclude=tmp_path / "out")
    assert [p.relative_to(tmp_path).as_posix() for p in globbed.files] == ["a.png", "b/2.png"]
    named = collect_inputs([str(tmp_path / "c" / "readme.md")])  # a file named on its own is always tried
    assert named.files == [tmp_path / "c" / "readme.md"] and named.explicit == {tmp_path / "c" / "readme.md"}
    # A hidden folder named on its own is listed (hidden names are judged below the folder given).
    assert collect_inputs([str(tmp_path / ".hidden")]).files == [tmp_path / ".hidden" / "h.png"]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".only-hidden.png").write_bytes(b"x")
    with pytest.raises(Exception, match="no images among the inputs"):
        collect_inputs([str(tmp_path / "d")])
    with pytest.raises(Exception, match="no file matches"):
        collect_inputs([str(tmp_path / "*.tiff")])


def test_batches_do_not_depend_on_what_is_finished():
    items = [Item(f"i{k}", f"i{k}.png") for k in range(7)]
    assert [[i.name for i in b] for b in deal_batches(items, 3)] == [["i0", "i1", "i2"], ["i3", "i4", "i5"], ["i6"]]


@pytest.mark.slow
def test_one_unreadable_image_fails_alone_and_finished_ones_are_recognised(tone_pipeline, dcgan, tmp_path):
    with torch.no_grad():
        images = dcgan.synthesize(dcgan.sample_latents(2, seed=3))
    good = [save_png(images[i], tmp_path / f"g{i}.png") for i in range(2)]
    (tmp_path / "bad.png").write_bytes(good[0].read_bytes()[:100])  # truncated: fails when read
    items = [Item("g0", str(good[0])), Item("bad", str(tmp_path / "bad.png")), Item("g1", str(good[1]))]
    request = {"method": "no-magec", "seed": 0}
    job = FolderJob(
        str(tmp_path / "out"), "no-magec", method_config("no-magec", 0.02), 0, FramingOptions(), request, {"pack": "t"}
    )
    outcome = invert_batch(tone_pipeline, job, items)
    assert outcome.done == ["g0", "g1"] and list(outcome.failed) == ["bad"]
    assert "bad.png" in outcome.failed["bad"] and "truncated" in outcome.failed["bad"]
    out = tmp_path / "out"
    index = {k: v for item in items for k, v in output_claims(item).items()}
    assert is_finished(out, index, items[0], request) and not is_finished(out, index, items[1], request)
    assert not is_finished(out, index, items[0], {**request, "seed": 1})  # other settings: done again
    assert not is_finished(out, {}, items[0], request)  # not recorded in the index as this input's: done again
    record = json.loads((out / "g0.json").read_text())
    assert record["request"] == request and record["batch_size"] == 2


def test_import_and_help_never_import_ray_and_a_missing_ray_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    code = (
        "import sys, magec, magec.distributed, magec.cli.main\n"
        "try:\n    magec.cli.main.main(['invert', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
    (tmp_path / "a.png").write_bytes(b"")
    no_ray = (
        "import sys; sys.modules['ray'] = None\n"
        "from magec.cli.main import main\n"
        f"sys.exit(main(['invert', {str(tmp_path)!r}, '--pack', 'p', '--out', 'o', '--workers', '2']))"
    )
    out = subprocess.run([sys.executable, "-c", no_ray], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.strip().count("\n") == 0, out.stderr
    assert "need Ray" in out.stderr and "pip install ray==" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


# ---- a local Ray instance ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_two_workers_one_worker_and_the_plain_process_write_the_same_bytes(
    local_ray, faces, pack_dir, reference, tmp_path
):
    expected = outputs(reference)
    assert len(expected) == 16 and "sub/f0.latent.safetensors" in expected
    for n in (2, 1):
        out = tmp_path / f"w{n}"
        assert main(["invert", str(faces), "--pack", str(pack_dir), "--out", str(out), *INV, "--workers", str(n)]) == 0
        assert outputs(out) == expected, f"--workers {n}"
        index = json.loads((out / "magec-index.json").read_text())
        assert len(index["inputs"]) == 8 and all(len(v) == 3 for v in index["inputs"].values())


def _worker_pids(root_pid: int) -> list[int]:
    """Processes under ``root_pid`` running an InversionWorker actor."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            names[int(proc.name)] = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(proc.name))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            todo.append(child)
            if "InversionWorker" in names.get(child, ""):
                found.append(child)
    return found


@pytest.mark.slow
def test_a_killed_worker_s_batch_is_redone_elsewhere_and_every_image_is_written_once(
    local_ray, faces, pack_dir, reference, tmp_path, capsys
):
    out = tmp_path / "out"
    args = ["invert", str(faces), "--pack", str(pack_dir), "--out", str(out), *INV, "--workers", "2"]
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", main(args)))
    thread.start()
    killed = None
    deadline = time.monotonic() + 120
    while thread.is_alive() and time.monotonic() < deadline:
        pids = _worker_pids(os.getpid())
        if len(pids) == 2 and list(out.rglob("*.json"))[:1]:  # both up, the first batch is written
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.05)
    thread.join(timeout=180)
    assert killed is not None and result.get("code") == 0
    printed = capsys.readouterr().out
    assert "inverted 8 images" in printed  # each image counted once, whatever was redone
    assert outputs(out) == outputs(reference)  # a redone batch gives the same bytes
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # nothing half-written is left


@pytest.mark.slow
def test_a_corrupt_image_is_reported_and_the_rest_are_written(local_ray, faces, pack_dir, reference, tmp_path, capsys):
    folder = tmp_path / "faces"
    for p in faces.rglob("*"):
        if p.is_file():
            (folder / p.relative_to(faces)).parent.mkdir(parents=True, exist_ok=True)
            (folder / p.relative_to(faces)).write_bytes(p.read_bytes())
    (folder / "f5.png").write_bytes((faces / "f5.png").read_bytes()[:150])  # truncated
    out = tmp_path / "out"
    code = main(["invert", str(folder), "--pack", str(pack_dir), "--out", str(out), *INV, "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("magec: error:")]
    assert len(errors) == 1 and "1 of 8 images failed" in errors[0], err
    assert "f5.png" in err and "truncated" in err and "notes.txt" in err
    written = outputs(out)
    assert len(written) == 14 and "f5.png" not in written
    # The batches are dealt over the readable images, so those that share no batch with f5 are unchanged;
    # the others were inverted in other company and only have to exist.
    # (the files name another source folder, so the codes are compared)
    for name in ("f1", "f2"):
        got, want = (load_latent(d / f"{name}.latent.safetensors").latent for d in (out, reference))
        assert torch.equal(got, want), name


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_and_a_rerun_redoes_nothing_finished(local_ray, faces, pack_dir, reference, tmp_path):
    out = tmp_path / "out"
    args = ["invert", str(faces), "--pack", str(pack_dir), "--out", str(out), *INV]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "magec", *args, "--workers", "2"], env=env, stderr=subprocess.PIPE, text=True
    )
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        workers |= set(_worker_pids(proc.pid))
        if len(list(out.rglob("*.json"))) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.rstrip().endswith("magec: interrupted"), err  # (after the bar's line)
    time.sleep(1)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert workers and not alive, f"workers left running: {alive}"

    done = [p.name.removesuffix(".json") for p in out.rglob("*.json") if p.name != "magec-index.json"]
    finished = {
        p: (p.stat().st_mtime_ns, p.stat().st_ino)
        for p in out.rglob("*")
        if p.is_file() and p.name.split(".")[0] in done
    }
    assert 2 <= len(done) < 8 and len(finished) == 3 * len(done)
    assert main([*args, "--workers", "2"]) == 0
    assert outputs(out) == outputs(reference)
    for p, stamp in finished.items():
        assert (p.stat().st_mtime_ns, p.stat().st_ino) == stamp, f"{p} was redone"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
