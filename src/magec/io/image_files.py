"""The image files of a folder: the one definition ``magec invert DIR`` and ``magec evaluate --images DIR`` share.

A folder's images are its files with an image suffix (case-insensitive), found recursively and sorted by path.
Hidden files and folders are left out (magec's temporary files, ``.<name>.magec-<pid>-<random>.tmp``, are hidden
names), and so is anything under an ``exclude`` folder (a run's own output folders inside its inputs). Symbolic
links to folders are not followed (no loops); links to files are listed
(a broken one is not).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from magec.io.atomic import TEMP_NAME

#: Files taken from folders and globs (by suffix, case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")


@dataclass(frozen=True)
class FolderFiles:
    """A folder's files, split by suffix: ``images``, and ``others`` (reported by ``invert``, never fatal)."""

    images: list[Path]
    others: list[Path]


def is_image_name(path: str | Path) -> bool:
    """Whether ``path`` has an image suffix (the file itself is not opened)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_skipped_name(name: str) -> bool:
    """Hidden names (``.git``, ``.DS_Store``) and magec's temporary files are never inputs."""
    return name.startswith(".") or TEMP_NAME.match(name) is not None


def folder_files(folder: str | Path, exclude: Iterable[str | Path] = ()) -> FolderFiles:
    """Every file under ``folder``, recursively, sorted by path, split into images and others.

    Hidden entries are judged by their names below ``folder``, so a folder named explicitly is listed even when
    it lies inside a hidden one. Nothing under the folders in ``exclude`` is listed.
    """
    root = Path(folder)
    skip = {os.path.abspath(e) for e in exclude}
    found: list[Path] = []
    if os.path.abspath(root) not in skip:
        for here, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if not is_skipped_name(d) and os.path.abspath(os.path.join(here, d)) not in skip]
            found.extend(p for n in names if not is_skipped_name(n) and (p := Path(here, n)).is_file())
    found.sort(key=lambda p: p.as_posix())
    return FolderFiles([p for p in found if is_image_name(p)], [p for p in found if not is_image_name(p)])


def image_files(folder: str | Path, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """The image files under ``folder`` (see ``folder_files``)."""
    return folder_files(folder, exclude).images
