"""An evaluation run's folder: its files, its description (``run.json``), its records and the CSVs built from them.

Each finished (image, method) record is a JSON file under ``OUT/records``; the CSVs are rebuilt from the
records in input order, so an interrupted-then-resumed run writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magec.errors import file_error
from magec.io import atomic

#: 2: ECS edits re-projected in chunks of --batch-size (before: all of an image's edits in one batch).
RECORD_VERSION = 2

#: dlib identity distance columns (``magec.evaluation.identity``), appended after the paper's columns.
IDENTITY_COLUMNS = ("id_distance",)
RECONSTRUCTION_COLUMNS = ("image", "method", "mse", "lpips", "steps", *IDENTITY_COLUMNS, "face_found")
#: The columns that name one edit of one projection (edits.csv and ecs.csv both start with them).
EDIT_KEY_COLUMNS = ("image", "method", "editor", "index", "operation", "amount")
EDIT_COLUMNS = (
    *EDIT_KEY_COLUMNS,
    "realism",
    "target_before",
    "target_after",
    "target_change",
    "t",
    *IDENTITY_COLUMNS,
)
ECS_COLUMNS = (
    *EDIT_KEY_COLUMNS,
    "lacks_target",
    "d_proj_edit",
    "d_edit_cyc",
    "d_proj_cyc",
    "ecs",
    *IDENTITY_COLUMNS,
)
TIMING_COLUMNS = ("image", "method", "projection_seconds", "ecs_reprojection_seconds")
#: ``--paste-back`` (``magec.evaluation.paste_back``): edit -1 is the projection pasted back (amount 0).
PASTE_COLUMNS = (
    "image",
    "method",
    "mode",
    "edit",
    "editor",
    "operation",
    "amount",
    "sharpness",
    "mse_face",
    "mse_outside",
    "id_distance",
)


@dataclass
class EvaluationPaths:
    """Files one run writes under its output folder."""

    root: Path
    reconstruction_csv: Path = field(init=False)
    edits_csv: Path = field(init=False)
    ecs_csv: Path = field(init=False)
    timing_csv: Path = field(init=False)
    paste_csv: Path = field(init=False)
    run_json: Path = field(init=False)
    records: Path = field(init=False)
    images: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.reconstruction_csv = self.root / "reconstruction.csv"
        self.edits_csv = self.root / "edits.csv"
        self.ecs_csv = self.root / "ecs.csv"
        self.timing_csv = self.root / "timing.csv"
        self.paste_csv = self.root / "paste.csv"
        self.run_json = self.root / "run.json"
        self.records = self.root / "records"
        self.images = self.root / "images"

    def record(self, method: str, image_id: str) -> Path:
        return self.records / safe_name(method) / f"{image_id}.json"

    def image_dir(self, image_id: str, method: str | None = None) -> Path:
        d = self.images / image_id
        return d / safe_name(method) if method else d

    @property
    def reference_features(self) -> Path:
        """The realism reference set's features, computed once per run (by the driver) and reloaded on resume."""
        return self.root / "reference_features.pt"


def check_run_folder(out_dir: str | Path, force: bool = False) -> Path:
    """Check, before any heavy work, that ``out_dir`` is new, empty, or an evaluation run (resumed).

    A folder holding other files is refused; ``force`` adds the run beside them, but still refuses
    when one of the run's own file names is taken by a file magec did not write.
    """
    root = Path(out_dir)
    paths = EvaluationPaths(root)
    if root.exists() and not root.is_dir():
        raise file_error(root, "is a file; --out must be a folder for the evaluation run")
    if not root.is_dir() or not any(root.iterdir()) or paths.run_json.is_file():
        return root
    if not force:
        raise file_error(
            root,
            "folder exists and is not a magec evaluation run; choose a new or empty folder, "
            "or --force to add the run beside its files (magec never replaces files it did not write)",
        )
    for taken in (
        paths.run_json,
        paths.reconstruction_csv,
        paths.edits_csv,
        paths.ecs_csv,
        paths.timing_csv,
        paths.paste_csv,
        paths.records,
        paths.images,
    ):
        if taken.exists():
            raise file_error(taken, "exists and was not written by magec; choose another --out")
    return root


def safe_name(name: str) -> str:
    """A method or editor name as a file-name part (``im2stylegan++`` -> ``im2stylegan__``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def check_or_write_metadata(paths: EvaluationPaths, metadata: dict[str, Any]) -> None:
    """A resumed run must measure exactly what the first run measured; anything else is refused."""
    if paths.run_json.exists():
        try:
            previous = json.loads(paths.run_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise file_error(
                paths.run_json, f"unreadable run description ({exc}); remove the folder to start over"
            ) from None
        if previous != json.loads(json.dumps(metadata)):
            changed = sorted(
                k for k in set(previous) | set(metadata) if previous.get(k) != json.loads(json.dumps(metadata.get(k)))
            )
            raise file_error(
                paths.root,
                f"holds a run with different settings ({', '.join(changed)}); use another --out to start a new one",
            )
        return
    atomic.write_json(paths.run_json, metadata)


def record_done(paths: EvaluationPaths, method: str, image_id: str) -> bool:
    """Whether the (image, method) record is written, readable and of this version (else it is recomputed)."""
    path = paths.record(method, image_id)
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("version") == RECORD_VERSION
    except (OSError, ValueError):
        return False  # a damaged record is recomputed


def write_record(paths: EvaluationPaths, method: str, image_id: str, record: dict[str, Any]) -> None:
    atomic.write_json(paths.record(method, image_id), record)


def _csv_text(columns: Sequence[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: ("" if row.get(c) is None else row.get(c, "")) for c in columns})
    return buf.getvalue()


def write_csvs(paths: EvaluationPaths, image_ids: Sequence[str], methods: Sequence[str]) -> None:
    """Rebuild the four CSVs from the records, in input order then method order."""
    rec_rows, edit_rows, ecs_rows, time_rows, paste_rows = [], [], [], [], []
    for image_id in image_ids:
        for method in methods:
            path = paths.record(method, image_id)
            if not path.is_file():
                continue
            r = json.loads(path.read_text(encoding="utf-8"))
            key = {"image": image_id, "method": method}
            rec_rows.append(key | r["reconstruction"])
            edit_rows.extend(key | e for e in r["edits"])
            ecs_rows.extend(key | e for e in r["ecs"])
            time_rows.append(key | {k: round(v, 3) for k, v in r["timing"].items()})
            paste_rows.extend(key | p for p in r.get("paste", []))
    atomic.write_text(paths.reconstruction_csv, _csv_text(RECONSTRUCTION_COLUMNS, rec_rows))
    atomic.write_text(paths.edits_csv, _csv_text(EDIT_COLUMNS, edit_rows))
    atomic.write_text(paths.ecs_csv, _csv_text(ECS_COLUMNS, ecs_rows))
    atomic.write_text(paths.timing_csv, _csv_text(TIMING_COLUMNS, time_rows))
    if paste_rows:  # only runs with --paste-back have the file
        atomic.write_text(paths.paste_csv, _csv_text(PASTE_COLUMNS, paste_rows))
