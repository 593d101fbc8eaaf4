"""Micro-batching: concurrent encoder calls share forward passes, each caller gets its own rows,
errors reach every caller, and a caller alone encodes in its own thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from guards.batching import MicroBatcher, batched
from guards.concepts import ConceptList
from guards.encoder import Encoder, Vectors
from guards.guard import Guard


class GatedEncoder:
    """Encodes a text as [len(text), 1, 0, 0]; its first call waits for ``gate``."""

    name, dim = "gated", 4

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: list[int] = []
        self.fail = False

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not self.calls:
            self.gate.wait(5)
        self.calls.append(len(texts))
        if self.fail:
            raise ValueError("broken encoder")
        return np.array([[len(t), 1, 0, 0] for t in texts], dtype=np.float32)


def test_calls_queued_while_a_batch_runs_share_the_next_one() -> None:
    inner = GatedEncoder()
    batcher = MicroBatcher(inner)
    texts = [["a"], ["bb", "ccc"], ["dddd"], ["eeeee", "ffffff", "g"]]
    results: dict[int, Vectors] = {}

    def call(i: int) -> None:
        results[i] = batcher.encode(texts[i])

    first = threading.Thread(target=call, args=(0,))
    first.start()
    for _ in range(500):  # until the first call is inside the encoder
        if batcher._rows._queue == [] and batcher._rows._leading:
            break
        time.sleep(0.01)
    others = [threading.Thread(target=call, args=(i,)) for i in (1, 2, 3)]
    for thread in others:
        thread.start()
    for _ in range(500):  # until all three are queued behind it
        if len(batcher._rows._queue) == 3:
            break
        time.sleep(0.01)
    inner.gate.set()
    for thread in (first, *others):
        thread.join(5)
    assert inner.calls == [1, 6], "three calls, one forward pass"
    for i, batch in enumerate(texts):
        assert results[i][:, 0].tolist() == [len(t) for t in batch]


def test_an_encoder_error_reaches_every_caller_of_the_batch() -> None:
    inner = GatedEncoder()
    inner.gate.set()
    inner.fail = True
    with pytest.raises(ValueError, match="broken encoder"):
        MicroBatcher(inner).encode(["x"])


def test_a_caller_alone_encodes_in_its_own_thread() -> None:
    threads: list[int] = []

    class Recording(GatedEncoder):
        def encode(self, texts: Sequence[str]) -> Vectors:
            threads.append(threading.get_ident())
            return super().encode(texts)

    inner = Recording()
    inner.gate.set()
    batcher = MicroBatcher(inner)
    assert batcher.encode(["ab"])[0, 0] == 2
    assert batcher.encode(["abc"])[0, 0] == 3
    assert threads == [threading.get_ident()] * 2
    assert not batcher._rows._leading and batcher._rows._queue == []


def test_one_batcher_per_encoder_is_shared() -> None:
    inner = GatedEncoder()
    assert batched(inner) is batched(inner)
    assert batched(batched(inner)) is batched(inner)
    assert batched(GatedEncoder()) is not batched(inner)


def test_a_guard_built_without_batching_encodes_directly(
    concepts: ConceptList, encoder: Encoder
) -> None:
    assert isinstance(Guard.build(concepts, encoder=encoder).detector._encoder.inner, MicroBatcher)
    unbatched = Guard.build(concepts, encoder=encoder, batching=False)
    assert unbatched.detector._encoder.inner is encoder
