"""``magec study prepare``'s pool: written photo by photo, resumable, refused under other settings, named edits."""

from __future__ import annotations

import pytest
import torch

from magec.errors import MagecError
from magec.latent.kinds import ATTRIBUTE, COMPONENT, editor_kinds
from magec.studio import study
from magec.studio.study import StudyDB, pool_editors, pool_photos, prepare_pool

METHODS = ("magec", "im2stylegan++")
STEPS = 0.004  # one or two steps per schedule part: the pool's bookkeeping, not the inversions, is tested


def _photos(pipeline, n: int = 3) -> list[tuple[str, torch.Tensor]]:
    gen = pipeline.generator
    with torch.no_grad():
        faces = gen.synthesize(gen.sample_latents(n, 4321)).cpu()
    return [(f"face-{k}", faces[k : k + 1]) for k in range(n)]


def _prepare(pipeline, db: StudyDB, photos, **kw) -> int:
    kw = {"edits_per_photo": 2, "steps_scale": STEPS, "seed": 5, "methods": METHODS, "progress": False, **kw}
    return prepare_pool(pipeline, db, photos, **kw)


def _content(db: StudyDB) -> list[tuple]:
    with db._connect() as conn:
        return conn.execute(
            "SELECT p.name, p.png, e.editor, e.operation, e.amount, r.method, r.png FROM renders r "
            "JOIN edits e ON e.id = r.edit_id JOIN photos p ON p.id = e.photo_id ORDER BY p.id, e.id, r.method"
        ).fetchall()


class _Stop(KeyboardInterrupt):
    pass


@pytest.mark.slow
def test_an_interrupted_pool_resumes_to_the_uninterrupted_one(tone_pipeline, tmp_path, monkeypatch):
    photos = _photos(tone_pipeline, 2)
    whole = StudyDB(tmp_path / "whole.sqlite", create=True)
    assert _prepare(tone_pipeline, whole, photos) == 4

    db = StudyDB(tmp_path / "resumed.sqlite", create=True)

    def stop_after_first(index: int, name: str) -> None:
        raise _Stop()

    with pytest.raises(_Stop):  # Ctrl-C after the first photo was committed
        _prepare(tone_pipeline, db, photos, on_photo=stop_after_first)
    assert pool_photos(db) == 1 and db.pool_size() == 2

    calls = []
    real_render = study.render_latent

    def render_then_stop(*args, **kw):
        calls.append(1)
        if len(calls) == 3:  # in the middle of the second photo's edits
            raise _Stop()
        return real_render(*args, **kw)

    monkeypatch.setattr(study, "render_latent", render_then_stop)
    with pytest.raises(_Stop):
        _prepare(tone_pipeline, db, photos)
    assert pool_photos(db) == 1 and db.pool_size() == 2  # the unfinished photo left nothing behind
    monkeypatch.setattr(study, "render_latent", real_render)

    assert _prepare(tone_pipeline, db, photos) == 2  # continues with the photo not yet in the pool
    assert _content(db) == _content(whole)
    assert _prepare(tone_pipeline, db, photos) == 0  # a finished pool: nothing to do
    assert _content(db) == _content(whole)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": 6}, "other settings \\(seed 5, not 6\\)"),
        ({"steps_scale": 0.01}, "other settings \\(steps_scale"),
        ({"methods": ("magec",)}, "other settings \\(methods"),
        ({"components": True}, "other settings \\(components"),
        ({"edits_per_photo": 3}, "other settings \\(edits"),
    ],
)
def test_a_pool_prepared_with_other_settings_is_refused(tone_pipeline, tmp_path, change, message):
    photos = _photos(tone_pipeline, 1)
    db = StudyDB(tmp_path / "s.sqlite", create=True)
    _prepare(tone_pipeline, db, photos)
    before = _content(db)
    with pytest.raises(MagecError, match=message) as info:
        _prepare(tone_pipeline, db, photos, **change)
    assert "\n" not in str(info.value) and "use a new --db" in str(info.value)
    assert _content(db) == before


def test_a_pool_of_other_photos_or_from_an_older_magec_is_refused(tone_pipeline, tmp_path):
    photos = _photos(tone_pipeline, 2)
    db = StudyDB(tmp_path / "s.sqlite", create=True)
    _prepare(tone_pipeline, db, photos[:1])
    with pytest.raises(MagecError, match="other settings \\(photos\\)"):
        _prepare(tone_pipeline, db, photos)
    with db._connect() as conn:  # a pool written before the settings were stored
        conn.execute("DELETE FROM meta WHERE key = 'settings'")
    with pytest.raises(MagecError, match="already holds a pool of 2 edits"):
        _prepare(tone_pipeline, db, photos[:1])


def test_default_edits_are_named_attributes_and_components_only_on_request(tone_pipeline, tmp_path):
    assert set(tone_pipeline.editors) & set(editor_kinds(COMPONENT))  # the pack has components to leave out
    assert pool_editors(tone_pipeline) == [k for k in editor_kinds(ATTRIBUTE) if k in tone_pipeline.editors]
    with_components = pool_editors(tone_pipeline, components=True)
    assert set(with_components) - set(pool_editors(tone_pipeline)) == {
        k for k in editor_kinds(COMPONENT) if k in tone_pipeline.editors
    }
    db = StudyDB(tmp_path / "s.sqlite", create=True)
    _prepare(tone_pipeline, db, _photos(tone_pipeline, 2), edits_per_photo=4)
    with db._connect() as conn:
        edits = conn.execute("SELECT editor, operation, amount FROM edits").fetchall()
    assert edits and {e for e, _, _ in edits} <= set(editor_kinds(ATTRIBUTE))
    operations = tone_pipeline.editors["interfacegan"].operations()
    assert all(op in operations for _, op, _ in edits)
    label = study.edit_label(*edits[0])
    assert label.startswith(("more ", "less ")) and edits[0][1] in label and "InterfaceGAN" in label


def test_size_quick_and_full_settings():
    from magec.cli import cmd_study
    from magec.cli.main import build_parser

    parser = build_parser()
    quick = parser.parse_args(["study", "prepare", "--size", "quick"])
    assert cmd_study.size_settings(quick) == (2, 0.1)
    assert cmd_study.size_settings(parser.parse_args(["study", "prepare"])) == (7, 1.0)  # full: as before
    mixed = parser.parse_args(["study", "prepare", "--size", "quick", "--generated", "0", "--steps-scale", "0.5"])
    assert cmd_study.size_settings(mixed) == (0, 0.5)
    assert not quick.components
    with pytest.raises(SystemExit):
        parser.parse_args(["study", "prepare", "--size", "huge"])
