"""The studio's library parts without a browser: render_latent, the job queue, upload rules, the study database."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
import torch
from PIL import Image

from magec.errors import MagecError
from magec.inversion import method_config
from magec.io.images import tensor_to_pil
from magec.render import apply_edits, edited_latent, render_latent
from magec.studio.jobs import CANCELLED, DONE, FAILED, JobQueue
from magec.studio.study import StudyDB, Trial, rows_csv, study_report


def test_render_latent_is_what_magec_edit_draws(tone_pipeline):
    gen = tone_pipeline.generator
    z = gen.sample_latents(1, 3)
    op = tone_pipeline.pack.editors["interfacegan"].operations()[0]
    rows = apply_edits(tone_pipeline, z, "z", None, "interfacegan", [op], [-2.0, 2.0])
    for edit in rows[0]:
        shown = render_latent(tone_pipeline, z, "z", None, {("interfacegan", op): edit.amount})[0]
        assert torch.equal(shown, edit.image)
    # No slider moved: the projection itself; two sliders compose, in order.
    assert torch.equal(render_latent(tone_pipeline, z, "z", None, {}), gen.synthesize(z))
    both = {("interfacegan", op): 1.0, ("ganspace", "pc0"): 1.5}
    step = edited_latent(
        tone_pipeline, edited_latent(tone_pipeline, z, {("interfacegan", op): 1.0}), {("ganspace", "pc0"): 1.5}
    )
    assert torch.allclose(edited_latent(tone_pipeline, z, both), step)
    with pytest.raises(MagecError, match="unknown editor"):
        render_latent(tone_pipeline, z, "z", None, {("nope", op): 1.0})


def test_job_queue_runs_one_job_at_a_time_and_cancels(tone_pipeline):
    from magec.inversion import invert

    queue = JobQueue("test")
    running, overlap = [0], []

    def work(job):
        running[0] += 1
        overlap.append(running[0])
        time.sleep(0.05)
        running[0] -= 1
        return job.id

    jobs = [queue.submit(f"viewer-{k}", work) for k in range(4)]
    assert all(j.wait(10) for j in jobs)
    assert max(overlap) == 1 and [j.state for j in jobs] == [DONE] * 4

    # Cancel stops a running inversion through invert's step callback.
    started = threading.Event()
    image = tone_pipeline.generator.synthesize(tone_pipeline.generator.sample_latents(1, 5))

    def long_inversion(job):
        def callback(info):
            started.set()
            return job.report(info.step + 1, info.total_steps, "magec")

        return invert(tone_pipeline, image, "magec", method_config("magec"), 0, callback)

    job = queue.submit("me", long_inversion)
    assert started.wait(30)
    assert queue.cancel("me") == 1
    assert job.wait(30) and job.state == CANCELLED
    assert job.result.stopped and job.result.steps < method_config("magec").total_steps

    failing = queue.submit("me", lambda job: (_ for _ in ()).throw(MagecError("photo.png: no face found")))
    assert failing.wait(10) and failing.state == FAILED and failing.error == "photo.png: no face found"
    assert queue.submit("me", lambda job: 7).wait(10)  # the worker survived the failure
    queue.close()


def test_cancel_ends_a_waiting_job_at_once():
    """Cancel on a queued job must not wait for the job ahead of it (which may be a minute of PTI)."""
    queue = JobQueue("test")
    release = threading.Event()
    try:
        ahead = queue.submit("other", lambda job: release.wait(30))
        waiting = queue.submit("me", lambda job: "ran")
        assert queue.ahead(waiting) == 1
        assert queue.cancel("me") == 1
        assert waiting.wait(1) and waiting.state == CANCELLED and waiting.result is None  # ended, never ran
        assert not ahead.finished
        release.set()
        assert ahead.wait(10) and ahead.state == DONE
        assert queue.submit("me", lambda job: "ran").wait(10)  # the queue goes on
    finally:
        release.set()
        queue.close()


def test_a_closed_studio_leaves_the_next_one_a_working_queue(tone_pipeline):
    """A notebook that serves twice (or ``magec bench`` then a serve) must not get the first studio's dead queue."""
    from magec.studio.session import Studio

    first = Studio(tone_pipeline)
    assert first.queue.submit("me", lambda job: 1).wait(10)
    first.close()
    second = Studio(tone_pipeline)
    try:
        assert second.queue is not first.queue
        job = second.queue.submit("me", lambda job: 2)
        assert job.wait(10) and job.state == DONE and job.result == 2
    finally:
        second.close()
    with pytest.raises(MagecError, match="closed"):  # never a job that waits forever
        first.queue.submit("me", lambda job: 3)


@pytest.mark.slow
def test_a_photo_of_two_people_says_so_and_frames_either(tone_pipeline, tmp_path):
    from skimage import data

    from magec.studio.session import Studio

    pytest.importorskip("dlib")
    head = Image.fromarray(data.astronaut()).crop((120, 0, 360, 260))  # her head only (no badges)
    photo = Image.new("RGB", (1024, 512), (128, 128, 128))
    photo.paste(head.resize((360, 390)), (40, 60))
    photo.paste(head, (640, 120))  # a smaller second face on the right
    root = tmp_path / "uploads"
    root.mkdir()
    photo.save(root / "two.png")
    studio = Studio(tone_pipeline, upload_root=root)
    try:
        largest = studio.read_upload(root / "two.png")
        other = studio.read_upload(root / "two.png", face=1)
        assert largest.faces == other.faces >= 2 and (largest.face, other.face) == (0, 1)
        assert largest.frame.square_corners().mean(0)[0] < 512 < other.frame.square_corners().mean(0)[0]
        with pytest.raises(MagecError, match=f"no face {largest.faces}: only {largest.faces}"):
            studio.read_upload(root / "two.png", face=largest.faces)
    finally:
        studio.close()


def test_uploads_are_checked_before_decoding(tone_pipeline, tmp_path):
    from magec.studio.session import Studio

    root = tmp_path / "uploads"
    root.mkdir()
    studio = Studio(tone_pipeline, upload_root=root, max_bytes=100_000)
    try:
        outside = tmp_path / "secret.png"
        Image.new("RGB", (8, 8)).save(outside)
        with pytest.raises(MagecError, match="did not come through this page"):
            studio.read_upload(outside)
        with pytest.raises(MagecError, match="did not come through this page"):
            studio.read_upload(root / ".." / "secret.png")
        big = root / "big.png"
        big.write_bytes(b"\0" * 200_000)
        with pytest.raises(MagecError, match="above the page's limit"):
            studio.read_upload(big)
        bomb = root / "bomb.png"
        Image.new("1", (8000, 6000)).save(bomb)  # 48 megapixels in a few KB: refused from the header
        with pytest.raises(MagecError, match="megapixels") as caught:
            studio.read_upload(bomb)
        assert str(root) not in str(caught.value)  # the page names the file, never the server's folders
        assert "--" not in str(caught.value) and "shrink or crop" in str(caught.value)  # no option the page lacks
        broken = root / "broken.png"
        broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        with pytest.raises(MagecError, match="broken.png"):
            studio.read_upload(broken)
        with pytest.raises(MagecError, match="outside"):
            studio.slider_values([float("nan")] + [0.0] * (len(studio.sliders) - 1))
        with pytest.raises(MagecError, match="expected"):
            studio.slider_values([0.0])
    finally:
        studio.close()


def _pool(db: StudyDB, methods=("magec", "no-magec", "im2stylegan++"), edits: int = 3) -> None:
    png = Image.new("RGB", (4, 4))
    import io

    buf = io.BytesIO()
    png.save(buf, format="PNG")
    with db._connect() as conn:
        photo = conn.execute("INSERT INTO photos (name, png) VALUES ('p', ?)", (buf.getvalue(),)).lastrowid
        for k in range(edits):
            edit = conn.execute(
                "INSERT INTO edits (photo_id, editor, operation, amount) VALUES (?, 'interfacegan', 'male', ?)",
                (photo, 1.0 + k),
            ).lastrowid
            for m in methods:
                conn.execute("INSERT INTO renders VALUES (?, ?, ?)", (edit, m, buf.getvalue()))


def test_study_database_records_each_judgement_and_reports(tmp_path):
    from scipy.stats import binomtest

    db = StudyDB(tmp_path / "s.sqlite", create=True)
    _pool(db)
    trials = []
    for k in range(12):
        trial = db.next_trial("ann")
        assert isinstance(trial, Trial) and trial.left != trial.right
        trials.append((trial.edit_id, *sorted((trial.left, trial.right))))
        winner_left = trial.left == "magec" or (k % 4 == 0 and trial.right != "magec")
        db.record("ann", trial, "left" if winner_left else "right")
        # Committed at once: another connection sees it (a killed server loses nothing acknowledged).
        with sqlite3.connect(tmp_path / "s.sqlite") as other:
            assert other.execute("SELECT COUNT(*) FROM judgements").fetchone()[0] == k + 1
    assert len(set(trials[:9])) == 9  # the 9 (edit, pair) combinations come before any repeat
    db.record("bob", db.next_trial("bob"), "left")
    report = study_report(db)
    assert report["judgements"] == 13 and report["judges"] == 2
    rows = db.rows()
    for pair in report["pairs"]:
        mine = [r for r in rows if {r["winner"], r["loser"]} == {pair.first, pair.second}]
        k = sum(r["winner"] == pair.first for r in mine)
        assert (pair.first_wins, pair.n) == (k, len(mine))
        assert pair.p_value == pytest.approx(binomtest(k, len(mine), 0.5).pvalue)
    magec_pairs = [p for p in report["pairs"] if p.first == "magec"]
    assert magec_pairs and all(p.first_wins >= p.second_wins for p in magec_pairs)
    text = rows_csv(rows)
    assert text.splitlines()[0].startswith("id,created,judge,photo") and len(text.splitlines()) == 14
    # Same judge, same history: the same next trial (seeded), shown blind (methods only on the server).
    assert db.next_trial("carl") == db.next_trial("carl")
    with pytest.raises(MagecError, match="left or right"):
        db.record("ann", db.next_trial("ann"), "both")
    with pytest.raises(MagecError, match="judge id"):
        db.next_trial("   ")


def test_study_database_refuses_what_it_is_not(tmp_path):
    with pytest.raises(MagecError, match="no such study database"):
        StudyDB(tmp_path / "none.sqlite")
    text = tmp_path / "notes.sqlite"
    text.write_text("my notes")
    with pytest.raises(MagecError, match="not an SQLite file"):
        StudyDB(text, create=True)
    assert text.read_text() == "my notes"
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(MagecError, match="not a magec study database"):
        StudyDB(other)


@pytest.mark.parametrize("tables", [("notes",), ("photos", "notes")], ids=["other-tables", "clashing-table"])
def test_study_db_never_writes_into_a_users_sqlite_file(tmp_path, tables):
    mine = tmp_path / "mine.sqlite"
    with sqlite3.connect(mine) as conn:
        for t in tables:
            conn.execute(f"CREATE TABLE {t} (x TEXT)")
            conn.execute(f"INSERT INTO {t} VALUES ('precious')")
    conn.close()
    before = mine.read_bytes()
    with pytest.raises(MagecError, match="not a magec study database"):
        StudyDB(mine, create=True)
    assert mine.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.sqlite"]  # no journal, no temporary file
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(MagecError, match="an empty file"):
        StudyDB(empty, create=True)  # created only where no file is
    assert empty.read_bytes() == b""


def test_a_new_study_db_is_marked_as_magec_s(tmp_path):
    from magec.studio.study import STUDY_USER_VERSION

    StudyDB(tmp_path / "new.sqlite", create=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.sqlite"]
    with sqlite3.connect(tmp_path / "new.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == STUDY_USER_VERSION
    conn.close()
    StudyDB(tmp_path / "new.sqlite", create=True)  # reopening a study is fine


def test_the_time_an_inversion_takes_is_estimated_before_it_starts(tone_pipeline):
    """The page shows each method's time before the user starts it; the estimate follows what runs take here."""
    from magec.studio.session import Studio

    studio = Studio(tone_pipeline, steps_scale=0.05)
    try:
        plain, tuned = studio.estimate_seconds("magec"), studio.estimate_seconds("magec+pti")
        assert 0 < plain < tuned  # PTI's tuning comes on top of the same inversion
        image = tone_pipeline.generator.synthesize(tone_pipeline.generator.sample_latents(1, 3))
        started = time.perf_counter()
        job = studio.submit("me", tensor_to_pil(image[0]), ("magec",))
        assert job.wait(120) and job.state == DONE
        took = time.perf_counter() - started
        assert took / 3 < studio.estimate_seconds("magec") < took * 3  # set-up aside, the same order
        with pytest.raises(MagecError, match="unknown method"):
            studio.estimate_seconds("fast")
    finally:
        studio.close()


def test_an_upload_is_deleted_once_read_and_nothing_else_is(tone_pipeline, tmp_path):
    from magec.studio.session import Studio

    root = tmp_path / "uploads"
    (root / "abc").mkdir(parents=True)
    upload, outside = root / "abc" / "me.png", tmp_path / "mine.png"
    for path in (upload, outside):
        Image.new("RGB", (8, 8)).save(path)
    studio = Studio(tone_pipeline, upload_root=root)
    try:
        studio.discard_upload(outside)  # not the studio's: kept
        studio.discard_upload(root / "abc" / ".." / ".." / "mine.png")
        studio.discard_upload(root)
        assert outside.is_file() and root.is_dir()
        studio.discard_upload(upload)
        assert not upload.exists()
        studio.discard_upload(upload)  # twice is fine
    finally:
        studio.close()


@pytest.mark.slow
def test_an_upload_framed_on_arrival_is_the_one_the_page_gets(tone_pipeline, tmp_path, monkeypatch):
    """``prepare_upload`` (called as Gradio's upload route answers) frames the file once, ahead of the page's
    request; ``read_upload`` takes that framing only for the largest face of the very same file, and an error found
    ahead is the same one line."""
    from skimage import data

    from magec.studio import session
    from magec.studio.session import Studio

    pytest.importorskip("dlib")
    root = tmp_path / "uploads"
    root.mkdir()
    photo, outside = root / "me.png", tmp_path / "mine.png"
    Image.fromarray(data.astronaut()).save(photo)
    Image.fromarray(data.astronaut()).save(outside)
    studio = Studio(tone_pipeline, upload_root=root)
    framings = []
    real = session.read_framed_photo
    monkeypatch.setattr(session, "read_framed_photo", lambda *a, **k: framings.append(a[3]) or real(*a, **k))
    try:
        plain = studio.read_upload(photo)
        studio.prepare_upload(outside)  # not the studio's file: nothing done
        studio.prepare_upload(photo)
        prepared = studio.read_upload(photo, owner="me")
        assert framings == [0, 0]  # framed once on arrival, not again when asked
        assert prepared.frame == plain.frame and (prepared.landmarks == plain.landmarks).all()
        assert prepared.faces == plain.faces and prepared.image.tobytes() == plain.image.tobytes()
        studio.end_session("me")
        assert prepared.photo is None  # owned by the viewer who asked for it

        studio.prepare_upload(photo)  # another face asked for: framed for that face
        assert studio.read_upload(photo, face=1).face == 1 and sorted(framings[2:]) == [0, 1]
        studio.prepare_upload(photo)
        Image.fromarray(data.astronaut()[:, ::-1].copy()).save(photo)  # the file changed since: framed again
        assert studio.read_upload(photo).frame != plain.frame and framings[4:] == [0, 0]

        broken = root / "broken.png"
        broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        studio.prepare_upload(broken)
        with pytest.raises(MagecError, match="^broken.png: ") as caught:
            studio.read_upload(broken)
        assert str(root) not in str(caught.value)
        studio.prepare_upload(photo)
        studio.discard_upload(photo)  # gone with its file
        assert not photo.exists() and not len(studio._ahead)
    finally:
        studio.close()
