"""User-facing errors: one line, naming the file and the problem; the CLI prints them and exits 1."""

from __future__ import annotations

from pathlib import Path


class MagecError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


def file_error(path: str | Path, problem: str) -> MagecError:
    """Build the canonical one-line error ``<path>: <problem>``."""
    return MagecError(f"{path}: {problem}")
