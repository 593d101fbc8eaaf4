"""Reading JSON Lines files that configure the guard (forget corpora, labelled examples)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from guards.errors import ConceptFileError


def read_objects(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line; errors name the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConceptFileError(path, f"cannot read file: {exc}") from exc
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConceptFileError(path, f"invalid JSON: {exc.msg}", line=number) from exc
        if not isinstance(row, dict):
            raise ConceptFileError(path, "each line must be a JSON object", line=number)
        rows.append((number, row))
    return rows
