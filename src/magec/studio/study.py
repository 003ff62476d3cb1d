"""The paper's blind user study (Fig. 5): a pool of edits, pairwise judgements in SQLite, and the report.

``prepare_pool`` inverts a few photos with every method and renders random named edits of each projection up
front, so a judge never waits for an inversion; it commits photo by photo and resumes where it stopped. A
trial shows one photo, a named edit and the two methods' edited images in random left/right order; the judge
picks the better one (quality and coherence with the named edit). Each judgement is one SQLite transaction,
committed before the page acknowledges it, so a killed server loses nothing that was acknowledged.
``study_report`` gives the preference rate per method pair with a two-sided binomial test against 50%.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from magec import __version__
from magec.errors import MagecError, file_error
from magec.inversion import invert, method_config
from magec.inversion.config import PAPER_METHODS as METHODS
from magec.io.atomic import atomic_path
from magec.io.images import tensor_to_pil
from magec.latent.kinds import ATTRIBUTE, COMPONENT, editor_kinds, editor_traits
from magec.pipeline import Pipeline
from magec.render import render_latent

STUDY_FORMAT = "magec-study-1"
SQLITE_MAGIC = b"SQLite format 3\x00"
#: ``PRAGMA user_version`` of a study database magec created ("MAGE"); older studies have 0 and are still read.
STUDY_USER_VERSION = 0x4D414745
#: Editors the pool's edits are drawn from by default: named attributes, which a judge can rate for coherence.
STUDY_EDITORS = editor_kinds(ATTRIBUTE)
#: Added with ``components``: unsupervised directions (GANSpace, SeFa), with no name to rate them against.
COMPONENT_EDITORS = editor_kinds(COMPONENT)
#: How the page names an attribute editor in an edit's label.
EDITOR_NAMES = {"interfacegan": "InterfaceGAN", "styleflow": "StyleFlow"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS photos (id INTEGER PRIMARY KEY, name TEXT NOT NULL, png BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS edits (
    id INTEGER PRIMARY KEY, photo_id INTEGER NOT NULL REFERENCES photos(id),
    editor TEXT NOT NULL, operation TEXT NOT NULL, amount REAL NOT NULL);
CREATE TABLE IF NOT EXISTS renders (
    edit_id INTEGER NOT NULL REFERENCES edits(id), method TEXT NOT NULL, png BLOB NOT NULL,
    PRIMARY KEY (edit_id, method));
CREATE TABLE IF NOT EXISTS judgements (
    id INTEGER PRIMARY KEY, created REAL NOT NULL, judge TEXT NOT NULL,
    edit_id INTEGER NOT NULL REFERENCES edits(id), left_method TEXT NOT NULL, right_method TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right')), winner TEXT NOT NULL, loser TEXT NOT NULL);
"""
TABLES = ("meta", "photos", "edits", "renders", "judgements")
CSV_COLUMNS = (
    "id",
    "created",
    "judge",
    "photo",
    "editor",
    "operation",
    "amount",
    "left_method",
    "right_method",
    "choice",
    "winner",
    "loser",
)


def edit_label(editor: str, operation: str, amount: float) -> str:
    """The named edit a judge reads, e.g. ``more male (InterfaceGAN, +3.0)`` or ``ganspace pc2, +1.40``."""
    try:
        family = editor_traits(editor).family
    except KeyError:
        family = None
    if family == ATTRIBUTE:
        return f"{'more' if amount > 0 else 'less'} {operation} ({EDITOR_NAMES.get(editor, editor)}, {amount:+.1f})"
    return f"{editor} {operation}, {amount:+.2f}"


def _png(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    tensor_to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def png_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def study_db_path(given: str | Path | None) -> Path:
    """The study database ``magec studio`` and ``magec study`` share: the one given, else the one in magec's cache."""
    if given:
        return Path(given)
    from magec.weights import magec_cache_dir

    path = magec_cache_dir() / "study.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class StudyDB:
    """A study database: the pool of edits and the judgements. Opening checks that it is one."""

    def __init__(self, path: str | Path, create: bool = False) -> None:
        """Open the study database at ``path``, checking read-only that it is one.

        magec never writes into a file that is not already a magec study: an existing file is opened
        read-only and checked (SQLite header, tables, format, integrity) before anything is written;
        ``create`` makes a new database only where no file is (written under a temporary name, then renamed).
        """
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise file_error(self.path, "no such study database (make one with `magec study prepare`)")
            if not self.path.parent.is_dir():
                raise file_error(self.path.parent, "no such folder for the study database")
            self._create()
        elif self.path.is_dir():
            raise file_error(self.path, "is a folder, not a study database")
        self._check()

    def _create(self) -> None:
        with atomic_path(self.path) as tmp:
            conn = sqlite3.connect(tmp)
            try:
                with conn:
                    conn.executescript(SCHEMA)
                    conn.execute("INSERT INTO meta VALUES ('format', ?)", (STUDY_FORMAT,))
                    conn.execute(f"PRAGMA user_version = {STUDY_USER_VERSION}")
            finally:
                conn.close()

    def _check(self) -> None:
        """Read-only: refuse (one line) a file that is not a magec study, without writing a byte to it."""
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise file_error(self.path, f"unreadable study database ({exc.strerror or exc})") from None
        if head != SQLITE_MAGIC:
            raise file_error(
                self.path,
                "not a study database (an empty file)" if not head else "not a study database (not an SQLite file)",
            )
        try:
            conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
            try:
                found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                missing = [t for t in TABLES if t not in found]
                if missing:
                    raise file_error(self.path, f"not a magec study database (no table {missing[0]})")
                fmt = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
                if fmt is None or fmt[0] != STUDY_FORMAT:
                    raise file_error(
                        self.path, f"study database format {fmt[0] if fmt else None!r}, expected {STUDY_FORMAT}"
                    )
                problem = conn.execute("PRAGMA quick_check").fetchone()[0]
                if problem != "ok":
                    raise file_error(self.path, f"corrupted study database ({problem})")
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise file_error(self.path, f"corrupted or unreadable study database ({exc})") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection per call (the page's requests come from many threads), committed on success."""
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            with conn:  # one transaction: committed when the block ends, rolled back on an error
                yield conn
        finally:
            conn.close()

    # -- the pool ---------------------------------------------------------------------------------
    def pool_size(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM edits").fetchone()[0]

    def methods(self) -> list[str]:
        with self._connect() as conn:
            found = {r[0] for r in conn.execute("SELECT DISTINCT method FROM renders")}
        return [m for m in METHODS if m in found] + sorted(found - set(METHODS))

    def add_photo(self, conn: sqlite3.Connection, name: str, image: torch.Tensor) -> int:
        return conn.execute("INSERT INTO photos (name, png) VALUES (?, ?)", (name, _png(image))).lastrowid

    # -- trials and judgements ----------------------------------------------------------------------
    def next_trial(self, judge: str) -> Trial | None:
        """The next pair for ``judge``: an (edit, method pair) they judged least, in a seeded random order."""
        judge = check_judge(judge)
        with self._connect() as conn:
            methods_of: dict[int, list[str]] = {}
            for edit_id, method in conn.execute("SELECT edit_id, method FROM renders ORDER BY edit_id"):
                methods_of.setdefault(edit_id, []).append(method)
            seen: dict[tuple[int, str, str], int] = {}
            for edit_id, a, b in conn.execute(
                "SELECT edit_id, winner, loser FROM judgements WHERE judge = ?", (judge,)
            ):
                key = (edit_id, *sorted((a, b)))
                seen[key] = seen.get(key, 0) + 1
            candidates = [
                (edit_id, *pair)
                for edit_id, methods in methods_of.items()
                for pair in itertools.combinations(sorted(methods), 2)
            ]
            if not candidates:
                return None
            rng = random.Random(f"{judge}:{sum(seen.values())}")
            fewest = min(seen.get(c, 0) for c in candidates)
            edit_id, a, b = rng.choice([c for c in candidates if seen.get(c, 0) == fewest])
            left, right = (a, b) if rng.random() < 0.5 else (b, a)
            row = conn.execute(
                "SELECT e.editor, e.operation, e.amount, p.png FROM edits e JOIN photos p ON p.id = e.photo_id "
                "WHERE e.id = ?",
                (edit_id,),
            ).fetchone()
            pngs = dict(conn.execute("SELECT method, png FROM renders WHERE edit_id = ?", (edit_id,)).fetchall())
        editor, operation, amount, photo = row
        return Trial(edit_id, edit_label(editor, operation, amount), left, right, photo, pngs[left], pngs[right])

    def record(self, judge: str, trial: Trial, choice: str) -> int:
        """Store one judgement (its own committed transaction); returns the judge's number of judgements."""
        judge = check_judge(judge)
        if choice not in ("left", "right"):
            raise MagecError(f"choice {choice!r}: expected left or right")
        winner, loser = (trial.left, trial.right) if choice == "left" else (trial.right, trial.left)
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO judgements (created, judge, edit_id, left_method, right_method, choice, winner, loser) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), judge, trial.edit_id, trial.left, trial.right, choice, winner, loser),
            )
            return conn.execute("SELECT COUNT(*) FROM judgements WHERE judge = ?", (judge,)).fetchone()[0]

    def rows(self) -> list[dict]:
        """Every judgement with its photo and edit, oldest first (the CSV export)."""
        with self._connect() as conn:
            cursor = conn.execute(
                "SELECT j.id, j.created, j.judge, p.name, e.editor, e.operation, e.amount, j.left_method, "
                "j.right_method, j.choice, j.winner, j.loser FROM judgements j "
                "JOIN edits e ON e.id = j.edit_id JOIN photos p ON p.id = e.photo_id ORDER BY j.id"
            )
            return [dict(zip(CSV_COLUMNS, r)) for r in cursor]


@dataclass(frozen=True)
class Trial:
    """One blind pair. The methods stay on the server: the page only shows the images."""

    edit_id: int
    label: str
    left: str
    right: str
    photo_png: bytes
    left_png: bytes
    right_png: bytes


def check_judge(judge: str) -> str:
    judge = " ".join(str(judge).split())
    if not judge or len(judge) > 64:
        raise MagecError("judge id: give a name or code of 1 to 64 characters")
    return judge


def pool_editors(pipeline: Pipeline, components: bool = False) -> list[str]:
    """The pipeline's editors the pool's edits are drawn from: the attribute editors (InterfaceGAN, and
    StyleFlow where the pack has it), whose named edits a judge can rate for coherence; with ``components``
    also the unsupervised component editors (GANSpace, SeFa), which have no name to rate them against."""
    kinds = STUDY_EDITORS + (COMPONENT_EDITORS if components else ())
    return [kind for kind in kinds if kind in pipeline.editors]


def pool_settings(
    pipeline: Pipeline,
    photos: list[str],
    edits_per_photo: int,
    steps_scale: float,
    seed: int,
    methods: tuple[str, ...],
    components: bool,
) -> dict[str, Any]:
    """What decides a pool's content, stored in the database so that a rerun continues only the same pool."""
    pack = {k: v for k, v in pipeline.settings().items() if k != "device"}
    return {
        "methods": list(methods),
        "steps_scale": float(steps_scale),
        "edits": int(edits_per_photo),
        "seed": int(seed),
        "components": bool(components),
        "photos": list(photos),
        "pack": json.loads(json.dumps(pack, default=str)),
    }


def check_pool_settings(db: StudyDB, settings: dict[str, Any]) -> int:
    """Refuse (one line) a database whose pool was prepared with other settings; returns the photos it holds."""
    with db._connect() as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        done = [r[0] for r in conn.execute("SELECT name FROM photos ORDER BY id")]
    if row is None:
        if done or db.pool_size():
            raise file_error(db.path, f"already holds a pool of {db.pool_size()} edits (use a new --db)")
        return 0
    stored = json.loads(row[0])
    for key in ("methods", "steps_scale", "edits", "seed", "components", "pack", "photos"):
        if stored.get(key) != settings.get(key):
            what = "photos" if key == "photos" else f"{key} {stored.get(key)!r}, not {settings.get(key)!r}"
            raise file_error(db.path, f"holds a pool prepared with other settings ({what}); use a new --db")
    if done != settings["photos"][: len(done)]:
        raise file_error(db.path, "holds a pool of other photos; use a new --db")
    return len(done)


def seconds_per_photo(
    pipeline: Pipeline, image: torch.Tensor, methods: tuple[str, ...], steps_scale: float, seed: int
) -> float:
    """About how long one photo takes with every method: a short run of each (3 steps per schedule part, the
    first of each not counted, as the studio's estimate does) times the steps of the full schedule."""
    total = 0.0
    for method in methods:
        config = method_config(method, steps_scale)
        short = replace(config, phases=tuple(replace(p, steps=3) for p in config.phases))
        times: dict[int, list[float]] = {}
        last = [time.perf_counter()]

        def on_step(info: Any, times: dict[int, list[float]] = times, last: list[float] = last) -> bool:
            now = time.perf_counter()
            times.setdefault(info.phase, []).append(now - last[0])
            last[0] = now
            return False

        invert(pipeline, image, method, short, seed, on_step)
        for k, phase in enumerate(config.phases, 1):
            spent = times.get(k, [])[1:]
            total += phase.steps * (sorted(spent)[len(spent) // 2] if spent else 0.0)
    return total


def prepare_pool(
    pipeline: Pipeline,
    db: StudyDB,
    photos: list[tuple[str, torch.Tensor]],
    edits_per_photo: int = 3,
    steps_scale: float = 1.0,
    seed: int = 0,
    methods: tuple[str, ...] = METHODS,
    progress: bool = True,
    components: bool = False,
    on_photo: Callable[[int, str], None] | None = None,
) -> int:
    """Invert ``photos`` (name, (1, 3, R, R)) with every method and store random edits of each; returns edits added.

    Photo by photo: each photo's inversions and edits are committed in one transaction as soon as it is done,
    so an interruption keeps the finished photos, and a rerun with the same settings (checked against those
    stored in the database) continues with the others. Every photo is inverted alone with ``seed`` and its
    edits are drawn from a generator seeded by ``seed`` and its position, so a resumed pool equals an
    uninterrupted one. The edits are named attributes (``pool_editors``), with a random sign and the
    editor's default amount. ``on_photo(index, name)`` is called after each photo is committed.
    """
    if not photos:
        raise MagecError("no photos for the study pool")
    from tqdm.auto import tqdm

    from magec.memory import check_inversion_batch

    editors = pipeline.editors
    choices = [
        (name, op)
        for name in pool_editors(pipeline, components)
        for op in editors[name].traits.default_operations(editors[name].operations())
    ]
    if not choices:
        raise MagecError("the pack has no attribute editor for the study's edits (use --components)")
    settings = pool_settings(pipeline, [n for n, _ in photos], edits_per_photo, steps_scale, seed, methods, components)
    done = check_pool_settings(db, settings)
    with db._connect() as conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)", (json.dumps(settings),))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('pool', ?)", (f"magec {__version__}, {pipeline.settings()}",))
    todo = len(photos) - done
    if not todo:
        return 0
    if progress:
        seconds = seconds_per_photo(pipeline, photos[done][1], methods, steps_scale, seed)
        print(
            f"inverting {todo} photos x {len(methods)} methods"
            + (f" ({done} already in the pool)" if done else "")
            + f", about {_duration(seconds * todo)}",
            file=sys.stderr,
        )
    check_inversion_batch(pipeline.generator, 1, pipeline.device)
    added = 0
    bar = tqdm(total=len(photos), initial=done, desc="study pool", unit="photo", disable=not progress)
    try:
        for i in range(done, len(photos)):
            name, image = photos[i]
            results = {m: invert(pipeline, image, m, method_config(m, steps_scale), seed) for m in methods}
            rng = random.Random(f"{seed}:{i}")
            with db._connect() as conn:  # one transaction per photo: all of it, or nothing of it
                photo_id = db.add_photo(conn, name, image[0])
                for editor, operation in rng.sample(choices, min(edits_per_photo, len(choices))):
                    amount = editors[editor].default_amount * rng.choice((-1.0, 1.0))
                    edit_id = conn.execute(
                        "INSERT INTO edits (photo_id, editor, operation, amount) VALUES (?, ?, ?, ?)",
                        (photo_id, editor, operation, amount),
                    ).lastrowid
                    for method, res in results.items():
                        edited = render_latent(
                            pipeline, res.latents, res.space, res.noise, {(editor, operation): amount}
                        )
                        conn.execute(
                            "INSERT INTO renders (edit_id, method, png) VALUES (?, ?, ?)",
                            (edit_id, method, _png(edited[0])),
                        )
                    added += 1
            bar.update(1)
            if on_photo is not None:
                on_photo(i, name)
    finally:
        bar.close()
    return added


def pool_photos(db: StudyDB) -> int:
    """How many photos the pool holds (each committed with all its edits)."""
    with db._connect() as conn:
        return conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class PairResult:
    first: str
    second: str
    first_wins: int
    second_wins: int
    p_value: float

    @property
    def n(self) -> int:
        return self.first_wins + self.second_wins

    @property
    def first_rate(self) -> float:
        return self.first_wins / self.n if self.n else float("nan")


def study_report(db: StudyDB) -> dict:
    """Preference rates per method pair (two-sided binomial test against 0.5), judges and judgements."""
    from scipy.stats import binomtest

    rows = db.rows()
    order = {m: i for i, m in enumerate(METHODS)}
    wins: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        a, b = sorted((r["winner"], r["loser"]), key=lambda m: (order.get(m, len(order)), m))
        counts = wins.setdefault((a, b), [0, 0])
        counts[0 if r["winner"] == a else 1] += 1
    pairs = [
        PairResult(a, b, k, n_b, float(binomtest(k, k + n_b, 0.5, alternative="two-sided").pvalue))
        for (a, b), (k, n_b) in sorted(wins.items(), key=lambda kv: (order.get(kv[0][0], 9), order.get(kv[0][1], 9)))
    ]
    return {
        "judgements": len(rows),
        "judges": len({r["judge"] for r in rows}),
        "pool_edits": db.pool_size(),
        "pairs": pairs,
    }


def report_markdown(report: dict, db_name: str) -> str:
    lines = [
        f"# User study: {db_name}",
        "",
        f"{report['judgements']} judgements by {report['judges']} judge(s) on a pool of {report['pool_edits']} edits.",
        "Two-sided binomial test of the preference rate against 50% (scipy.stats.binomtest).",
        "",
        "| method A | method B | A preferred | B preferred | n | rate of A | p-value |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in report["pairs"]:
        lines.append(
            f"| {p.first} | {p.second} | {p.first_wins} | {p.second_wins} | {p.n} "
            f"| {p.first_rate:.2f} | {p.p_value:.3g} |"
        )
    if not report["pairs"]:
        lines.append("| (no judgements yet) | | | | | | |")
    return "\n".join(lines) + "\n"


def rows_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
