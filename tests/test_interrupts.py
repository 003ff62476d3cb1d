"""Interrupts, kills and concurrent runs leave nothing behind and lose nothing.

The output index is changed under a lock (concurrent runs keep every entry); a run that ends early withdraws
the claims it did not write (a new folder ends removed); temporary files of killed writers are removed by the
next run, and nothing else is. The slow tests send SIGINT/SIGTERM to real ``magec`` commands at chosen moments.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from magec.io.atomic import TEMP_NAME, remove_stale_temporaries
from magec.io.output_folder import INDEX, OutputFolder

SRC = Path(__file__).resolve().parents[1] / "src"


def _claim_many(folder: str, tag: str, n: int) -> None:
    for i in range(n):
        out = OutputFolder.open(folder, "inversion")  # each read of the index is stale a moment later
        out.claim({f"{tag}/{i}.png": f"/inputs/{tag}/{i}.png"})


def test_concurrent_claims_never_lose_an_entry(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_claim_many, args=(str(tmp_path / "out"), f"run{k}", 30)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    index = json.loads((tmp_path / "out" / INDEX).read_text())
    assert len(index["files"]) == 120 and len(index["inputs"]) == 120
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [INDEX]  # no lock file, no temporary file


def test_an_early_end_withdraws_unwritten_claims_and_removes_what_it_created(tmp_path):
    out = OutputFolder.open(tmp_path / "new" / "out", "inversion")
    with pytest.raises(KeyboardInterrupt), out.releasing():
        out.claim({"a/face.png": "/in/a.png", "b.png": "/in/b.png"})
        assert (tmp_path / "new" / "out" / INDEX).is_file()
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # the folders it created are gone

    # Into an existing folder, beside another run's claims: only this run's unwritten claims go.
    folder = tmp_path / "shared"
    other = OutputFolder.open(folder, "inversion")
    other.claim({"other.png": "/in/other.png"})
    mine = OutputFolder.open(folder, "inversion")
    with pytest.raises(RuntimeError), mine.releasing():
        mine.claim({"x.png": "/in/x.png", "y.png": "/in/y.png"})
        (folder / "x.png").write_bytes(b"written")
        raise RuntimeError("failed after one output")
    files = json.loads((folder / INDEX).read_text())["files"]
    assert files == {"other.png": "/in/other.png", "x.png": "/in/x.png"}
    other.release()  # other.png was never written either: its claim goes, the index keeps x.png
    assert json.loads((folder / INDEX).read_text())["files"] == {"x.png": "/in/x.png"}


WRITER = """
import sys, time
from magec.io.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a file")
    print(tmp, flush=True)
    time.sleep(120)
"""


def _writer(target: Path) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True, env=env)
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.is_file() and TEMP_NAME.match(tmp.name), tmp
    return proc, tmp


def test_temporaries_of_killed_writers_are_removed_and_nothing_else(tmp_path):
    out = OutputFolder.open(tmp_path / "out", "inversion")
    out.claim({"sub/face.png": "/in/face.png"})
    killed, stale = _writer(tmp_path / "out" / "sub" / "face.png")
    killed.kill()  # kill -9 mid-write
    killed.wait()
    running, live = _writer(tmp_path / "out" / "other.png")  # a concurrent run, still writing
    users = [tmp_path / "out" / name for name in (".notes.tmp", ".face.png.abc123.tmp", "x.magec-1-abcdefgh.tmp")]
    for p in users:
        p.write_text("mine")
    try:
        assert stale.exists()
        OutputFolder.open(tmp_path / "out", "inversion")  # what the next run does first
        assert not stale.exists() and live.exists()
        assert all(p.read_text() == "mine" for p in users)
        assert remove_stale_temporaries(tmp_path / "out") == []
    finally:
        running.kill()
        running.wait()


def test_a_folder_where_nothing_can_be_written_is_refused_at_once(tmp_path):
    from magec.errors import MagecError

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        probe = locked / "probe"
        try:
            probe.write_text("x")
        except PermissionError:
            places = [locked, locked / "new"]
        else:  # root writes anywhere chmod allows nothing: use a read-only file system if there is one
            probe.unlink()
            places = [Path("/sys/magec-out"), Path("/sys/magec/new/out")] if Path("/sys/kernel").is_dir() else []
        if not places:
            pytest.skip("no folder here refuses writes")
        for place in places:
            with pytest.raises(MagecError, match="folder is not writable"):
                OutputFolder.open(place, "inversion")
    finally:
        locked.chmod(0o755)
