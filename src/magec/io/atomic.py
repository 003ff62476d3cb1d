"""Atomic outputs: write to a temporary name beside the target, then rename.

A crash or a refused input never leaves a half-written file behind. The temporary name is recognisably
magec's own and says which process wrote it: ``.<name>.magec-<pid>-<random>.tmp``. The writer removes it
on any exit it survives (an exception, Ctrl-C, SIGTERM); after a ``kill -9`` or a power cut, the next run
into the folder removes those of dead processes (:func:`remove_stale_temporaries`), and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: ``.<name>.magec-<pid>-<random>.tmp``: magec's temporary files and folders (``tempfile``'s 8 random characters).
TEMP_NAME = re.compile(r"^\..+\.magec-(?P<pid>[1-9][0-9]*)-[a-z0-9_]{8}\.tmp$")


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.magec-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove, under ``folder`` (recursively), the temporary files magec left when a process writing them was
    killed: names matching :data:`TEMP_NAME` whose process is gone. Anything else, and the temporary files of
    running processes (a concurrent run), are left alone. Returns what was removed."""
    removed = []
    for path in Path(folder).rglob(".*.tmp"):
        match = TEMP_NAME.match(path.name)
        if match is None or path.is_symlink() or _alive(int(match["pid"])):
            continue
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_mode(path: Path, directory: bool = False) -> None:
    """Give a temporary file or folder the permissions a plain ``open``/``mkdir`` would have (mkstemp uses 0600)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_current_umask())


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s folder; rename it onto ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        publish_mode(tmp_path)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``target`` only if the block succeeds.

    ``target`` must not exist or be an empty folder: this never replaces anything (see
    ``magec.io.output_folder`` for writing into existing folders).
    """
    target = Path(target)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        raise FileExistsError(f"{target} exists and is not an empty folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        publish_mode(tmp, directory=True)
        for child in tmp.rglob("*"):
            publish_mode(child, directory=child.is_dir())
        os.replace(tmp, target)  # onto a missing or empty folder: atomic on POSIX
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
