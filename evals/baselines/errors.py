"""Exceptions raised by the baselines package.

Every failure the user can cause (a bad data file, an unknown method, a server that does not
start) is a `BaselineError`, so the CLI can print one clear line instead of a traceback.
"""

from __future__ import annotations

from guards.errors import NescioError


class BaselineError(NescioError):
    """Base class of every error raised by `evals.baselines`."""


class DataFileError(BaselineError):
    """A data file is missing or a line in it is malformed; the message names file, line, field."""


class UnknownMethodError(BaselineError):
    """The requested unlearning method is not in the registry."""


class ServerError(BaselineError):
    """The vLLM server under evaluation failed to start or answered with an error."""
