"""Reading a JSON file magec wrote (a pack manifest, a direction index), refusing it in one line when it is not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from magec.errors import file_error


def read_json_file(path: Path, missing: str, what: str) -> Any:
    """The JSON in ``path``, or a one-line error naming it: ``missing`` when it is not a file, ``corrupted <what>``
    when it is not UTF-8 JSON. What the JSON must hold is the caller's to check."""
    if not path.is_file():
        raise file_error(path, missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise file_error(path, f"corrupted {what} ({exc})") from None
