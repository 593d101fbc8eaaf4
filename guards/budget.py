"""Bounded guard work per request: a deadline and a cap on the texts encoded.

The encoder is where a check's time goes, and one check can ask it for any number of texts (a
turn, each pair of turns, each sentence, each sentence again when a mixed prompt is split). A
:class:`WorkBudget` set around one request's screening (:func:`spending`) is charged by the
:class:`BudgetedEncoder` the guard encodes with: past the cap it raises
:class:`~guards.errors.RequestRejected` (the client sent more than the guard checks), past the
deadline :class:`~guards.errors.GuardDeadlineExceeded` (the guard's fail-open/closed policy
applies). Large calls are encoded in chunks with the deadline checked between them, so no call
runs long past it, and so other requests' encoder calls get a turn in between.

The budget lives in a context variable: ``asyncio.to_thread`` copies the context into the worker
thread, and the encoder needs no new parameter. Outside :func:`spending` nothing is limited.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np

from guards.encoder import Encoder, Vectors
from guards.errors import GuardDeadlineExceeded, RequestRejected

# Texts per encoder call past which a call is cut. Small, so a short request waits at most one
# chunk of a long one (~0.3 s of ~100-token texts on 2 cores, vs ~1.2 s for 64); the extra calls
# cost a long request ~5%.
CHUNK = 16


@dataclass
class WorkBudget:
    """What one request may still spend: encoded texts, and time until ``deadline``
    (a ``time.monotonic()`` instant)."""

    max_texts: int
    deadline: float
    spent: int = field(default=0)

    def charge(self, texts: int) -> None:
        self.spent += texts
        if self.spent > self.max_texts:
            raise RequestRejected(
                f"the guard checks at most {self.max_texts} pieces of text (turns, pairs of "
                "turns, sentences) per request; send less text",
                code="guard_limit_exceeded",
            )

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise GuardDeadlineExceeded("the guard did not finish within its deadline")


_BUDGET: ContextVar[WorkBudget | None] = ContextVar("nescio_work_budget", default=None)


@contextmanager
def spending(budget: WorkBudget) -> Iterator[WorkBudget]:
    """Charge every :class:`BudgetedEncoder` call made in this context to ``budget``."""
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


class BudgetedEncoder:
    """Wraps an encoder; charges the current :class:`WorkBudget`, if any, for each call."""

    def __init__(self, inner: Encoder, chunk: int = CHUNK) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._chunk = chunk

    def encode(self, texts: Sequence[str]) -> Vectors:
        budget = _BUDGET.get()
        if budget is None:
            return self.inner.encode(texts)
        budget.charge(len(texts))
        if len(texts) <= self._chunk:
            budget.check_time()
            return self.inner.encode(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths together
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self._chunk):
            budget.check_time()
            rows = order[start : start + self._chunk]
            out[rows] = self.inner.encode([texts[i] for i in rows])
        return out
