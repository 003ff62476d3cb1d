"""Output folders that never cost the user a file.

magec writes into a folder only when it is new, empty, or already holds magec's outputs of the same
kind (an inversion run, edits, a preview, a demo). Every file it writes there is first *claimed* in the
folder's index (``magec-index.json``, written atomically before the files), so on a later run magec
knows which files are its own: those it may replace; any other file is never deleted or replaced.
``force`` only allows writing into a foreign, non-empty folder, and still never replaces a file magec
did not write. The index also records which input produced which outputs, so two inputs can never
share an output, not even across runs.

Single files named by the user (``magec align --out``, ``magec convert``) follow the same rule through
``check_output_file``: magec replaces a file it recognises as its own output, or any file with ``force``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magec.errors import file_error
from magec.io.atomic import publish_mode, write_json

INDEX = "magec-index.json"
INDEX_FORMAT = "magec-output-index"


def _read_index(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise file_error(path, f"unreadable magec output index ({exc}); move it away or choose another --out") from None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or not isinstance(data.get("files"), dict):
        raise file_error(path, "not a magec output index; choose another --out")
    return data


@dataclass
class OutputFolder:
    """A folder of one kind of magec output; construct with :meth:`open`, which checks it before any heavy work."""

    path: Path
    kind: str
    force: bool = False
    #: Relative file name -> the input it belongs to ("" when it belongs to the run as a whole).
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(
        cls, path: str | Path, kind: str, force: bool = False, own: Callable[[Path], Iterable[str]] | None = None
    ) -> OutputFolder:
        """Check that ``path`` may receive ``kind`` outputs; raise a one-line ``MagecError`` otherwise.

        ``own`` may recognise magec files in a folder written before indexes existed (e.g. a pack's
        manifest and tensors): it returns the relative names it vouches for.
        """
        path = Path(path)
        folder = cls(path, kind, force)
        if path.exists() and not path.is_dir():
            raise file_error(path, f"is a file; --out must be a folder for {kind} outputs")
        if not path.is_dir():
            return folder
        index = _read_index(path / INDEX)
        if index is not None:
            if index.get("kind") != kind:
                raise file_error(
                    path, f"holds magec {index.get('kind')} outputs, not {kind} outputs; choose another --out"
                )
            folder.files = {str(k): str(v) for k, v in index["files"].items()}
            return folder
        vouched = set(own(path)) if own is not None else set()
        for name in vouched:
            folder.files[name] = ""
        foreign = [p.name for p in path.iterdir() if p.name not in vouched]
        if foreign and not force:
            raise file_error(
                path,
                f"folder exists and holds files magec did not write ({', '.join(sorted(foreign)[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty folder, or --force to add to it "
                "(magec never replaces files it did not write)",
            )
        return folder

    def target(self, name: str) -> Path:
        return self.path / name

    def check_claims(self, claims: dict[str, str]) -> None:
        """Refuse (one line) if a claimed file exists and is not magec's, or belongs to another input."""
        for name, source in claims.items():
            target = self.target(name)
            if name in self.files:
                owner = self.files[name]
                if owner and source and owner != source and not self.force:
                    raise file_error(
                        target, f"already holds the output of {owner}, not of {source}; choose another --out"
                    )
                continue
            if target.exists() or target.is_symlink():
                raise file_error(
                    target, "exists and was not written by magec; refusing to replace it (choose another --out)"
                )

    def claim(self, claims: dict[str, str]) -> None:
        """Check, then record ``claims`` (relative name -> input) in the index before the files are written."""
        self.check_claims(claims)
        self.files.update(claims)
        self.save_index()

    def publish(self, staging: Path, source: str = "") -> list[Path]:
        """Claim every file under ``staging`` (a temporary folder beside this one), then move each into place
        with an atomic rename; returns the published paths."""
        names = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        self.claim({name: source for name in names})
        published = []
        for name in names:
            target = self.target(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            publish_mode(staging / name)
            os.replace(staging / name, target)
            published.append(target)
        return published

    def save_index(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        inputs: dict[str, list[str]] = {}
        for name, source in sorted(self.files.items()):
            if source:
                inputs.setdefault(source, []).append(name)
        write_json(
            self.target(INDEX),
            {"format": INDEX_FORMAT, "kind": self.kind, "files": dict(sorted(self.files.items())), "inputs": inputs},
        )


def check_output_file(path: str | Path, force: bool = False, ours: Callable[[Path], bool] | None = None) -> Path:
    """Check before heavy work that ``path`` may be written: new, recognised by ``ours`` as magec's, or ``force``."""
    path = Path(path)
    if path.is_dir():
        raise file_error(path, "is a folder; expected a file name to write")
    if path.parent.exists() and not path.parent.is_dir():
        raise file_error(path.parent, "is a file, not a folder")
    if path.exists() and not force and not (ours is not None and ours(path)):
        raise file_error(path, "exists and was not written by magec; choose another name or --force to replace it")
    if path.exists() and not os.access(path.parent if path.parent != Path("") else Path("."), os.W_OK):
        raise file_error(path.parent, "folder is not writable")
    return path


def check_not_inputs(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    """Refuse to write over any of the command's own inputs."""
    resolved = {Path(p).resolve() for p in inputs}
    for out in outputs:
        if Path(out).resolve() in resolved:
            raise file_error(out, "is also an input; refusing to overwrite it")


def unique_output_names(paths: list[Path]) -> list[str]:
    """Stable, distinct output names for input files: their paths relative to the inputs' common folder,
    without the extension, keeping the extension only where two inputs would otherwise share a name.

    ``a/face.png, b/face.png, face-2.png`` -> ``a/face, b/face, face-2``; ``x.png, x.jpg`` -> ``x.png, x.jpg``.
    The same file given twice is refused.
    """
    absolute = [Path(os.path.abspath(p)) for p in paths]
    seen: dict[Path, Path] = {}
    for given, path in zip(paths, absolute):
        if path in seen:
            raise file_error(given, f"given twice (also as {seen[path]}); each input is inverted once")
        seen[path] = given
    if not absolute:
        return []
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    full = [p.relative_to(root).as_posix() for p in absolute]
    names = [str(Path(f).with_suffix("")) if Path(f).suffix else f for f in full]
    while True:
        counts: dict[str, int] = {}
        for n in names:
            counts[n] = counts.get(n, 0) + 1
        clashes = [i for i, n in enumerate(names) if counts[n] > 1 and names[i] != full[i]]
        if not clashes:
            break
        for i in clashes:
            names[i] = full[i]
    return names
