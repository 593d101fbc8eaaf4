"""JSON Lines in and out, with errors that name the file, line and field."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from evals.errors import DataNotFoundError, ProbeFileError

Row = dict[str, Any]
M = TypeVar("M", bound=BaseModel)


def read_rows(path: Path) -> Iterator[tuple[int, Row]]:
    """``(line number, object)`` for each non-blank line; a line that is not a JSON object fails."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataNotFoundError(f"{path}: file not found") from exc
    except OSError as exc:
        raise ProbeFileError(path, f"cannot read: {exc.strerror}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ProbeFileError(path, f"invalid JSON: {exc.msg}", line=number) from exc
            if not isinstance(row, dict):
                raise ProbeFileError(path, "each line must be a JSON object", line=number)
            yield number, row


class RowReader:
    """Typed field access on one row, raising :class:`ProbeFileError` at the row's location."""

    def __init__(self, source: str | Path, line: int, row: Row) -> None:
        self.source = source
        self.line = line
        self.row = row

    def fail(self, field: str, message: str) -> ProbeFileError:
        return ProbeFileError(self.source, message, line=self.line, field=field)

    def text(self, field: str) -> str:
        value = self.row.get(field)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, "missing or not a non-empty string")
        return value

    def optional_text(self, field: str) -> str | None:
        return self.text(field) if self.row.get(field) is not None else None

    def integer(self, field: str) -> int:
        value = self.row.get(field)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self.fail(field, "missing or not an integer")
        try:
            return int(value)
        except ValueError as exc:
            raise self.fail(field, f"not an integer: {value!r}") from exc

    def texts(self, field: str, *, allow_single: bool = False) -> list[str]:
        value = self.row.get(field)
        if allow_single and isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.fail(field, "missing or not a non-empty list of strings")
        return value

    def integers(self, field: str) -> list[int]:
        value = self.row.get(field)
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise self.fail(field, "missing or not a list of integers")
        return value

    def build(self, model: type[M], **fields: Any) -> M:
        """Validate ``fields`` into ``model``; a failure names this row and the field at fault."""
        try:
            return model(**fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or model.__name__
            raise self.fail(field, first["msg"]) from exc


def write_rows(path: Path, rows: Iterable[Row]) -> int:
    """Write (replace) a JSONL file; returns the number of rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def append_row(path: Path, row: Row) -> None:
    """Append one row and flush, so an interrupted run loses at most the line being written."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
