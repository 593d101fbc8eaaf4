"""An encoder wrapper that encodes each distinct text once, in large batches.

Calibration and the evaluator rebuild many guards and run many checks over the same texts; the
detector encodes one conversation at a time, and over tens of thousands of texts that is the
slow path (~16 ms per single query). Encoding every text the detector will ask for up front,
in batches, and answering its calls from memory gives the same vectors much faster: the
wrapped encoder sees each distinct text exactly once (the memo is shared by every guard built
with it, so index evidence is not re-encoded either).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from guards.encoder import Encoder, Vectors

BATCH = 256
DEFAULT_CACHE = Path(".nescio/index-cache")


def vector_store(cache_dir: Path, encoder: Encoder) -> Path:
    """The store file for ``encoder``'s vectors in ``cache_dir`` (one file per encoder)."""
    return cache_dir / f"vectors-{encoder.name.replace('/', '_')}.npz"


def memoized(encoder: Encoder, cache_dir: Path | None) -> MemoEncoder:
    """``encoder`` itself when it already is a :class:`MemoEncoder` (so one vector store is
    loaded once and shared by every step of a run), else a new one over ``cache_dir``'s store."""
    if isinstance(encoder, MemoEncoder):
        return encoder
    return MemoEncoder(encoder, None if cache_dir is None else vector_store(cache_dir, encoder))


class MemoEncoder:
    """Same ``name`` and ``dim`` as the wrapped encoder, so index caches stay interchangeable.

    With a ``store`` file, vectors persist across runs (keyed by a digest of encoder name and
    text), so re-running an evaluation only encodes texts it has not seen before.
    """

    def __init__(self, inner: Encoder, store: Path | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._memo: dict[str, np.ndarray] = {}
        self._stored: dict[str, np.ndarray] = {}
        self._store_path = store
        self.encoded = 0
        self._saved_at = 0  # ``encoded`` when the store was last written
        if store is not None and store.exists():
            with np.load(store) as saved:
                self._stored = dict(zip(saved["keys"].tolist(), saved["vectors"], strict=True))

    def prefetch(self, texts: Iterable[str], *, progress: bool = False, desc: str = "") -> None:
        """Encode every not-yet-seen text, ``BATCH`` at a time, shortest first.

        Sorting by length first means each batch pads to a similar length, which on long,
        mixed inputs (multiple-choice prompts with code) saves much of the encoder's work.
        """
        todo = sorted(self._unseen(texts), key=len)
        chunks = range(0, len(todo), BATCH)
        for start in tqdm(chunks, desc=desc or "encoding", unit="batch", disable=not progress):
            self._store(todo[start : start + BATCH])

    def save(self) -> None:
        """Write every vector seen so far to the store file: a no-op without one, or when
        nothing was encoded since the last write (the store can be hundreds of MB)."""
        if self._store_path is None or self.encoded == self._saved_at:
            return
        merged = self._stored | {self._key(t): v for t, v in self._memo.items()}
        self._store_path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(merged), dtype="U40")
        vectors = np.stack(list(merged.values())) if merged else np.zeros((0, self.dim))
        # Written aside and renamed: a run that stops half-way, or another run saving the same
        # store at once, never leaves a truncated file behind.
        partial = self._store_path.with_name(f"{self._store_path.name}.{os.getpid()}.tmp.npz")
        np.savez(partial, keys=keys, vectors=vectors.astype(np.float32))
        os.replace(partial, self._store_path)
        self._saved_at = self.encoded

    def _key(self, text: str) -> str:
        return hashlib.sha1(f"{self.name}\0{text}".encode()).hexdigest()

    def encode(self, texts: Sequence[str]) -> Vectors:
        missing = self._unseen(texts)
        if missing:
            self._store(missing)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts]).astype(np.float32, copy=False)

    def _unseen(self, texts: Iterable[str]) -> list[str]:
        """Distinct texts neither in memory nor in the store file (stored ones are loaded)."""
        todo = []
        for text in dict.fromkeys(t for t in texts if t not in self._memo):
            vector = self._stored.get(self._key(text))
            if vector is None:
                todo.append(text)
            else:
                self._memo[text] = vector
        return todo

    def _store(self, texts: list[str]) -> None:
        vectors = self.inner.encode(texts)
        self.encoded += len(texts)
        for text, vector in zip(texts, vectors, strict=True):
            self._memo[text] = vector
