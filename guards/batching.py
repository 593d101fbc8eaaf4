"""Micro-batching: concurrent requests' encoder calls served by one forward pass (and, with
:class:`RowBatcher`, any per-row work that is cheaper in bulk, such as scoring against the
evidence matrix, :mod:`guards.evidence`).

On CPU an encoder call has a fixed cost (~12 ms for MiniLM on 2 cores) next to a small cost per
token, so sixty-four requests encoding one short chat each cost sixty-four times the overhead
when each calls alone, and about one when they are encoded together. :class:`MicroBatcher`
wraps an encoder with a leader and followers: a caller that finds nobody encoding encodes
itself, in its own thread, exactly as without the batcher; callers that arrive meanwhile queue
their texts and wait, and when the leader is done the next one takes everything queued (up to
``max_texts``) into one call and hands each caller its rows. No thread of its own, no cost when
alone. Vectors are the inner encoder's (rows of a padded batch equal the rows encoded alone, to
float precision).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from guards.encoder import Encoder, Vectors
from guards.errors import GuardError

MAX_TEXTS = 128
T = TypeVar("T")
Rows = np.ndarray


def _not_run() -> BaseException:
    return GuardError("batch did not run")


@dataclass
class _Job(Generic[T]):
    items: Sequence[T]
    done: bool = False
    outcome: Rows | BaseException = field(default_factory=_not_run)


class RowBatcher(Generic[T]):
    """Merges concurrent calls of ``run`` into batches: ``run(items)`` must return one row per
    item (an array whose first axis is ``len(items)``), and each row must not depend on the other
    items of the batch. A caller that finds nobody running runs its own items in its own thread;
    callers that arrive meanwhile queue and wait, and when the leader is done the next one takes
    everything queued (up to ``max_items``) into one call and hands each caller its rows."""

    def __init__(self, run: Callable[[list[T]], Rows], max_items: int = MAX_TEXTS) -> None:
        self._run_batch = run
        self._max_items = max_items
        self._queue: list[_Job[T]] = []
        self._turn = threading.Condition()
        self._leading = False

    def __call__(self, items: Sequence[T]) -> Rows:
        job = _Job(list(items))
        with self._turn:
            self._queue.append(job)
            while self._leading and not job.done:
                self._turn.wait()
            if not job.done:
                self._leading = True
        if not job.done:
            self._lead(job)
        if isinstance(job.outcome, BaseException):
            raise job.outcome
        return job.outcome

    def _lead(self, own: _Job[T]) -> None:
        """Run queued batches until ``own`` is done, then let a waiting caller lead."""
        try:
            while not own.done:
                with self._turn:
                    batch = self._take()
                self._run(batch)
        finally:
            with self._turn:
                self._leading = False
                self._turn.notify_all()

    def _take(self) -> list[_Job[T]]:
        """The queued jobs, oldest first, up to ``max_items`` items (always at least one job)."""
        batch: list[_Job[T]] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].items) <= self._max_items):
            job = self._queue.pop(0)
            batch.append(job)
            size += len(job.items)
        return batch

    def _run(self, batch: list[_Job[T]]) -> None:
        items = [item for job in batch for item in job.items]
        try:
            rows = self._run_batch(items)
        except BaseException as exc:  # every caller must wake up, whatever went wrong
            outcomes: list[Rows | BaseException] = [exc] * len(batch)
        else:
            ends = np.cumsum([len(job.items) for job in batch])
            outcomes = [
                rows[end - len(job.items) : end] for job, end in zip(batch, ends, strict=True)
            ]
        with self._turn:
            for job, outcome in zip(batch, outcomes, strict=True):
                job.outcome, job.done = outcome, True
            self._turn.notify_all()


class MicroBatcher:
    """An :class:`~guards.encoder.Encoder` that merges concurrent calls into batches."""

    def __init__(self, inner: Encoder, max_texts: int = MAX_TEXTS) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._rows: RowBatcher[str] = RowBatcher(inner.encode, max_texts)

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._rows(texts)


_SHARED: weakref.WeakValueDictionary[int, MicroBatcher] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def batched(encoder: Encoder) -> MicroBatcher:
    """The one :class:`MicroBatcher` of ``encoder`` in this process, so every guard built on it
    (an admin reload builds a new one) shares its batches and its worker thread."""
    if isinstance(encoder, MicroBatcher):
        return encoder
    with _SHARED_LOCK:
        batcher = _SHARED.get(id(encoder))
        if batcher is None or batcher.inner is not encoder:
            batcher = MicroBatcher(encoder)
            _SHARED[id(encoder)] = batcher
        return batcher
