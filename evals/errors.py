"""Exceptions raised by the evaluator, all under :class:`guards.errors.NescioError`.

A user-caused failure (a bad probe file, a missing data folder, an unreachable endpoint) is an
:class:`EvalError` subclass whose message says what to fix, so the CLI prints one line instead
of a traceback. Messages name files, lines and fields, never probe contents or answers.
"""

from __future__ import annotations

from pathlib import Path

from guards.errors import NescioError


class EvalError(NescioError):
    """Base class of every error the evaluator raises on purpose."""


class ProbeFileError(EvalError):
    """A probe file is unreadable or one of its lines is malformed."""

    def __init__(
        self, source: str | Path, message: str, *, line: int | None = None, field: str | None = None
    ) -> None:
        self.source = str(source)
        self.line = line
        self.field = field
        where = self.source if line is None else f"{self.source}:{line}"
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {message}")


class DataNotFoundError(EvalError):
    """A benchmark file or folder is not where it was looked for."""


class UnknownProbeSetError(EvalError):
    """A probe-set spec (``rwku:forget_level2``) names no known benchmark or split."""


class EndpointError(EvalError):
    """A system under test kept failing after every retry, or answered something unusable."""


class RunDirError(EvalError):
    """A run folder is missing, or its files do not belong together."""
