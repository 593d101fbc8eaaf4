"""Micro-batching: concurrent requests' encoder calls served by one forward pass.

On CPU an encoder call has a fixed cost (~12 ms for MiniLM on 2 cores) next to a small cost per
token, so sixty-four requests encoding one short chat each cost sixty-four times the overhead
when each calls alone, and about one when they are encoded together. :class:`MicroBatcher`
wraps an encoder: callers (the guard's worker threads) queue their texts and wait; one worker
thread takes everything queued, up to ``max_texts``, encodes it in one call and hands each
caller its rows. A caller alone waits for nothing but its own call; under load a caller waits
at most for the batch in progress and then rides in the next one. Vectors are the inner
encoder's (rows of a padded batch equal the rows encoded alone, to float precision).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from guards.encoder import Encoder, Vectors
from guards.errors import GuardError

MAX_TEXTS = 128
IDLE_S = 5.0


def _not_run() -> BaseException:
    return GuardError("encoder batch did not run")


@dataclass
class _Job:
    texts: Sequence[str]
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Vectors | BaseException = field(default_factory=_not_run)


class MicroBatcher:
    """An :class:`~guards.encoder.Encoder` that merges concurrent calls into batches."""

    def __init__(self, inner: Encoder, max_texts: int = MAX_TEXTS) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._max_texts = max_texts
        self._queue: list[_Job] = []
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        job = _Job(list(texts))
        with self._ready:
            self._queue.append(job)
            if self._worker is None:
                # A daemon: an encoder that is no longer used never holds up the process's exit.
                self._worker = threading.Thread(target=self._serve, name="encoder", daemon=True)
                self._worker.start()
            self._ready.notify()
        job.done.wait()
        if isinstance(job.outcome, BaseException):
            raise job.outcome
        return job.outcome

    def _serve(self) -> None:
        """Encode batches until nothing has been queued for ``IDLE_S`` (the thread then ends and
        the next call starts another, so an unused encoder holds no thread)."""
        while True:
            with self._ready:
                if not self._queue:
                    self._ready.wait(IDLE_S)
                if not self._queue:
                    self._worker = None
                    return
                batch = self._take()
            self._run(batch)

    def _take(self) -> list[_Job]:
        """The queued jobs, oldest first, up to ``max_texts`` texts (always at least one job)."""
        batch: list[_Job] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].texts) <= self._max_texts):
            job = self._queue.pop(0)
            batch.append(job)
            size += len(job.texts)
        return batch

    def _run(self, batch: list[_Job]) -> None:
        texts = [t for job in batch for t in job.texts]
        try:
            vectors = self.inner.encode(texts)
        except BaseException as exc:  # every caller must wake up, whatever went wrong
            for job in batch:
                job.outcome = exc
                job.done.set()
            return
        start = 0
        for job in batch:
            job.outcome = vectors[start : start + len(job.texts)]
            start += len(job.texts)
            job.done.set()


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
