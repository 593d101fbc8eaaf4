"""The memoising encoder calibration and the evaluator share: each distinct text encoded once,
optionally persisted in a vector store across runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from guards.encoder import Encoder
from guards.memo_encoder import MemoEncoder


def test_memo_encoder_encodes_each_distinct_text_once(encoder: Encoder) -> None:
    memo = MemoEncoder(encoder)
    memo.prefetch(["a b c", "d e f", "a b c"])
    vectors = memo.encode(["d e f", "a b c", "new text here"])
    assert vectors.shape == (3, encoder.dim)
    assert memo.encoded == 3
    assert np.allclose(vectors[1], encoder.encode(["a b c"])[0], atol=1e-5)


def test_memo_store_persists_vectors_across_runs(tmp_path: Path, encoder: Encoder) -> None:
    store = tmp_path / "vectors.npz"
    first = MemoEncoder(encoder, store)
    first.prefetch(["coral reef survey", "jazz piano"])
    first.save()
    second = MemoEncoder(encoder, store)
    second.prefetch(["coral reef survey", "jazz piano", "new words here"])
    assert second.encoded == 1
    assert (second.encode(["jazz piano"]) == first.encode(["jazz piano"])).all()
    third = MemoEncoder(encoder, store)  # encode() reads the store too, not only prefetch()
    third.encode(["coral reef survey", "jazz piano"])
    assert third.encoded == 0


def test_save_writes_only_when_something_new_was_encoded(tmp_path: Path, encoder: Encoder) -> None:
    store = tmp_path / "vectors.npz"
    memo = MemoEncoder(encoder, store)
    memo.save()
    assert not store.exists()  # nothing encoded: nothing to write
    memo.encode(["coral reef survey"])
    memo.save()
    written = store.stat().st_mtime_ns
    reread = MemoEncoder(encoder, store)
    reread.encode(["coral reef survey"])  # from the store
    reread.save()
    assert store.stat().st_mtime_ns == written
    reread.encode(["jazz piano"])
    reread.save()
    assert len(np.load(store)["keys"]) == 2
