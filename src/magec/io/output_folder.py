"""Output folders that never cost the user a file.

magec writes into a folder only when it is new, empty, or already holds magec's outputs of the same
kind (an inversion run, edits, a preview, a demo). Every file it writes there is first *claimed* in the
folder's index (``magec-index.json``, written atomically before the files), so on a later run magec
knows which files are its own: those it may replace; any other file is never deleted or replaced.
``force`` only allows writing into a foreign, non-empty folder, and still never replaces a file magec
did not write. The index also records which input produced which outputs, so two inputs can never
share an output, not even across runs.

The index is only changed under an exclusive ``flock`` on the folder itself (no lock file is left
behind): it is re-read inside the lock, merged with this run's claims and written atomically, so runs
writing into one folder at once never lose each other's entries. A run that ends early (an error,
Ctrl-C, SIGTERM) withdraws the claims it did not write (:meth:`OutputFolder.releasing`): an index that
lists nothing is removed, and so is the folder if the run created it and it is empty. Opening a folder
removes the temporary files magec's killed runs left there (``magec.io.atomic.remove_stale_temporaries``).

Single files named by the user (``magec align --out``, ``magec convert``) follow the same rule through
``check_output_file``: magec replaces a file it recognises as its own output, or any file with ``force``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magec.errors import file_error
from magec.io.atomic import TEMP_NAME, publish_mode, remove_stale_temporaries, write_json

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


@contextlib.contextmanager
def folder_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the folder ``path`` itself, held for the block (released when the fd closes)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_writable(path: Path) -> None:
    """Refuse (one line) a folder, or the nearest existing folder above a new one, where no file can be created:
    found by creating (and removing) a magec temporary file there, as the writes will, so it holds for root,
    read-only mounts and ACLs alike."""
    probe_in = path
    while not probe_in.exists() and probe_in.parent != probe_in:
        probe_in = probe_in.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{INDEX}.magec-{os.getpid()}-", suffix=".tmp", dir=probe_in)
    except OSError as exc:
        raise file_error(probe_in, f"folder is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


@dataclass
class OutputFolder:
    """A folder of one kind of magec output; construct with :meth:`open`, which checks it before any heavy work."""

    path: Path
    kind: str
    force: bool = False
    #: Relative file name -> the input it belongs to ("" when it belongs to the run as a whole).
    files: dict[str, str] = field(default_factory=dict)
    #: The names this run claimed (withdrawn by :meth:`release` where never written).
    claimed: set[str] = field(default_factory=set)
    #: The top-most folder this run created for ``path`` (None: it existed); removed again if left empty.
    created: Path | None = None

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
        check_writable(path)
        if not path.is_dir():
            return folder
        remove_stale_temporaries(path)
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
        foreign = [p.name for p in path.iterdir() if p.name not in vouched and not TEMP_NAME.match(p.name)]
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
        """Check, then record ``claims`` (relative name -> input) in the index before the files are written.

        Under the folder's lock, against the index as it is now on disk (another run may have added to it)."""
        self._make_folder()
        with folder_lock(self.path):
            self._refresh()
            self.check_claims(claims)
            self.files.update(claims)
            self.claimed.update(claims)
            self._write_index()

    def _make_folder(self) -> None:
        if self.path.is_dir():
            return
        top = self.path
        while not top.parent.exists() and top.parent != top:
            top = top.parent
        self.path.mkdir(parents=True, exist_ok=True)
        if self.created is None:
            self.created = top

    def _refresh(self) -> None:
        """Merge the index on disk (written by any run) with this run's claims; call under the lock."""
        index = _read_index(self.path / INDEX)
        if index is None:
            return
        if index.get("kind") != self.kind:
            raise file_error(
                self.path, f"holds magec {index.get('kind')} outputs, not {self.kind} outputs; choose another --out"
            )
        mine = {name: self.files[name] for name in self.claimed if name in self.files}
        self.files = {**{str(k): str(v) for k, v in index["files"].items()}, **mine}

    def release(self) -> None:
        """Withdraw this run's claims on files it never wrote (a run that ended early). An index left listing
        nothing is removed, and so are the folders this run created that are left empty."""
        if self.path.is_dir():
            with folder_lock(self.path):
                self._refresh()
                unwritten = [n for n in self.claimed if not (self.target(n).exists() or self.target(n).is_symlink())]
                for name in unwritten:
                    self.files.pop(name, None)
                    self.claimed.discard(name)
                if self.files:
                    if unwritten:
                        self._write_index()
                else:
                    (self.path / INDEX).unlink(missing_ok=True)
                for name in unwritten:  # sub-folders made for them (``a/face``) and left empty
                    for parent in self.target(name).parents:
                        if parent == self.path or self.path not in parent.parents:
                            break
                        with contextlib.suppress(OSError):
                            parent.rmdir()
        if self.created is not None:
            for folder in [self.path, *self.path.parents]:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty
                if folder == self.created:
                    break

    @contextlib.contextmanager
    def releasing(self) -> Iterator[OutputFolder]:
        """Run a block that writes the claimed files; if it ends early by any exception (Ctrl-C included),
        :meth:`release` the claims it did not write before the exception goes on."""
        try:
            yield self
        except BaseException:
            self.release()
            raise

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
        """Write this folder's index (under the folder's lock, merged with what is on disk)."""
        self._make_folder()
        with folder_lock(self.path):
            self._refresh()
            self._write_index()

    def _write_index(self) -> None:
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
