"""The SHA-256 of a file, read in blocks: the one fingerprint packs, latents, deltas and encoder files record."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of the file at ``path``, without holding it in memory (packs and encoders run to GBs)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
