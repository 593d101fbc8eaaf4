"""The exception hierarchy shared by every Nescio package.

Everything Nescio raises on purpose derives from :class:`NescioError`, so callers can catch one
type. The proxy maps each subclass to an OpenAI-shaped error in one place (`proxy.errors`).
Messages never carry concept contents or secrets: they name files, lines, fields and ids only.
"""

from __future__ import annotations

from pathlib import Path


class NescioError(Exception):
    """Base class of every error Nescio raises deliberately."""


class ConceptFileError(NescioError):
    """A concept list failed validation. Names the source, the line and the field at fault.

    The running configuration is never touched by a failed load: loaders build a new object and
    only a successful load replaces the old one.
    """

    def __init__(
        self, source: str | Path, message: str, *, line: int | None = None, field: str | None = None
    ) -> None:
        self.source = str(source)
        self.line = line
        self.field = field
        self.reason = message
        where = self.source if line is None else f"{self.source}:{line}"
        what = f" field '{field}'" if field else ""
        super().__init__(f"{where}:{what} {message}".replace(": ", ": ", 1))


class GuardError(NescioError):
    """Detection itself failed (encoder, index or corpus problem), not the request."""


class CalibrationError(NescioError):
    """Thresholds cannot be fitted as asked (too few labelled items, unknown concept ids)."""


class RequestRejected(NescioError):
    """The request cannot be guarded as sent (a client error, never a guard failure).

    ``param`` names the request field at fault and ``code`` is a stable machine-readable reason;
    the proxy answers 400 with both. The message never quotes the request's text.
    """

    def __init__(self, message: str, *, param: str | None = None, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class GuardDeadlineExceeded(GuardError):
    """The guard did not finish checking one request within its deadline."""
