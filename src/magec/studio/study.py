"""The paper's blind user study (Fig. 5): a pool of edits, pairwise judgements in SQLite, and the report.

``prepare_pool`` inverts a few photos with every method and renders random edit operations of each
projection up front, so a judge never waits for an inversion. A trial shows one photo, a named edit and
the two methods' edited images in random left/right order; the judge picks the better one (quality and
coherence with the named edit). Each judgement is one SQLite transaction, committed before the page
acknowledges it, so a killed server loses nothing that was acknowledged. ``study_report`` gives the
preference rate per method pair with a two-sided binomial test against 50%.
"""

from __future__ import annotations

import csv
import io
import itertools
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
from magec.latent.kinds import editor_kinds
from magec.pipeline import Pipeline
from magec.render import render_latent

STUDY_FORMAT = "magec-study-1"
SQLITE_MAGIC = b"SQLite format 3\x00"
#: ``PRAGMA user_version`` of a study database magec created ("MAGE"); older studies have 0 and are still read.
STUDY_USER_VERSION = 0x4D414745
#: Editors the edits of a study are drawn from: the paper's named directions (InterfaceGAN, GANSpace).
EDIT_EDITORS = editor_kinds(paper=True, linear=True)

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
    """The named edit a judge reads, e.g. ``more male (InterfaceGAN)`` or ``GANSpace pc2, +1.4``."""
    if editor == "interfacegan":
        return f"{'more' if amount > 0 else 'less'} {operation} (InterfaceGAN, {amount:+.1f})"
    return f"{editor} {operation}, {amount:+.2f}"


def _png(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    tensor_to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def png_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


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


def prepare_pool(
    pipeline: Pipeline,
    db: StudyDB,
    photos: list[tuple[str, torch.Tensor]],
    edits_per_photo: int = 3,
    steps_scale: float = 1.0,
    seed: int = 0,
    methods: tuple[str, ...] = METHODS,
    progress: bool = True,
    batch_size: int = 8,
) -> int:
    """Invert ``photos`` (name, (1, 3, R, R)) with every method and store random edits of each; returns edits added.

    Photos are inverted ``batch_size`` at a time (8: the default pool in one batch, as before); the batch is
    checked against the device's memory first (``magec.memory.check_inversion_batch``) and kept fixed, since
    an inversion's result depends on its batch up to float rounding.

    The edits are drawn (seeded) from the InterfaceGAN attributes and the leading GANSpace components,
    with a random sign and the editor's default amount. Everything is stored in one transaction.
    """
    if db.pool_size():
        raise file_error(db.path, f"already holds a pool of {db.pool_size()} edits (use a new --db)")
    if not photos:
        raise MagecError("no photos for the study pool")
    from magec.inversion import ProgressBar
    from magec.memory import check_inversion_batch

    images = torch.cat([p for _, p in photos])
    size = min(batch_size, len(photos))
    check_inversion_batch(pipeline.generator, size, pipeline.device)
    results = {}
    for method in methods:
        parts = []
        for start in range(0, len(photos), size):
            label = f"invert [{method}] {start + 1}-{min(len(photos), start + size)}/{len(photos)}"
            bar = ProgressBar(label) if progress else None
            config = method_config(method, steps_scale)
            parts.append(invert(pipeline, images[start : start + size], method, config, seed, bar))
        results[method] = _joined(parts)
    editors = pipeline.editors
    choices = [
        (name, op)
        for name in EDIT_EDITORS
        if name in editors
        for op in editors[name].traits.default_operations(editors[name].operations())
    ]
    rng = random.Random(seed)
    added = 0
    with db._connect() as conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('pool', ?)", (f"magec {__version__}, {pipeline.settings()}",))
        for i, (name, image) in enumerate(photos):
            photo_id = db.add_photo(conn, name, image[0])
            for editor, operation in rng.sample(choices, min(edits_per_photo, len(choices))):
                amount = editors[editor].default_amount * rng.choice((-1.0, 1.0))
                edit_id = conn.execute(
                    "INSERT INTO edits (photo_id, editor, operation, amount) VALUES (?, ?, ?, ?)",
                    (photo_id, editor, operation, amount),
                ).lastrowid
                for method, res in results.items():
                    noise = [n[i : i + 1] for n in res.noise] if res.noise is not None else None
                    edited = render_latent(
                        pipeline, res.latents[i : i + 1], res.space, noise, {(editor, operation): amount}
                    )
                    conn.execute(
                        "INSERT INTO renders (edit_id, method, png) VALUES (?, ?, ?)",
                        (edit_id, method, _png(edited[0])),
                    )
                added += 1
    return added


def _joined(parts: list[Any]) -> Any:
    """The latents, space and noise of inversion results of consecutive chunks, as one result."""
    from types import SimpleNamespace

    noise = None
    if parts[0].noise is not None:
        noise = [torch.cat([p.noise[i] for p in parts]) for i in range(len(parts[0].noise))]
    return SimpleNamespace(latents=torch.cat([p.latents for p in parts]), space=parts[0].space, noise=noise)


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
