"""``magec bench --folder``'s CPU accounting of the driver's process tree (no Ray needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from magec.distributed.bench import process_tree_cpu


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc (Linux)")
def test_the_tree_holds_a_grandchild_and_counts_its_cpu_time():
    # a child that starts a busy grandchild, as the driver starts the raylet and the raylet its workers
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(30)"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {busy!r}])\ntime.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tree = process_tree_cpu(os.getpid())
            grandchildren = [pid for pid in tree if pid not in (os.getpid(), parent.pid)]
            if grandchildren and max(tree[pid] for pid in grandchildren) >= 0.25:
                break
            time.sleep(0.1)
        assert parent.pid in tree and os.getpid() in tree
        assert grandchildren and max(tree[pid] for pid in grandchildren) >= 0.25
        assert tree[os.getpid()] > 0
    finally:
        for pid in process_tree_cpu(parent.pid):
            if pid != parent.pid:
                os.kill(pid, 9)
        parent.kill()
        parent.wait()


def test_a_missing_process_gives_an_empty_tree():
    assert process_tree_cpu(2**22 + 12345) == {}


def test_a_worker_computes_the_generator_s_starting_code_while_loading(monkeypatch):
    """Not in its first batch: there it would count as that image's time (and in the bench's window)."""
    import types

    import torch

    import magec.pipeline
    from magec.distributed.workers import InversionWorker

    calls = []
    generator = types.SimpleNamespace(initial_latent=lambda: calls.append("initial") or torch.zeros(4))
    monkeypatch.setattr(magec.pipeline, "load_pipeline", lambda **kw: types.SimpleNamespace(generator=generator))
    before = torch.get_num_threads()
    try:
        job = types.SimpleNamespace(init=None)  # a FolderJob as far as loading goes: the method's own start
        worker = InversionWorker({"pack": "p", "device": "cpu"}, job=job, threads=1)
    finally:
        torch.set_num_threads(before)
    assert calls == ["initial"] and worker.pipeline.generator is generator
