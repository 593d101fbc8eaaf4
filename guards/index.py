"""FAISS vector index over concept evidence, saved to disk and reloaded without re-encoding.

Exact inner product (``IndexFlatIP``) by default, which on unit vectors is cosine similarity;
above ``approx_above`` vectors an HNSW graph keeps search in milliseconds at a small recall cost.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from guards.errors import GuardError

APPROX_ABOVE = 200_000


@dataclass(frozen=True, slots=True)
class Entry:
    """What one indexed vector stands for: a concept and the kind of evidence (no text kept)."""

    concept_id: str
    source: str


class VectorIndex(Protocol):
    """Nearest-neighbour search by inner product.

    ``search`` takes unit query vectors of shape ``(n, dim)`` and returns ``(scores, ids)`` of
    shape ``(n, k)``, best first; ids index :attr:`entries`, and ``-1`` pads missing hits.
    """

    entries: Sequence[Entry]

    def vectors(self) -> NDArray[np.float32]: ...

    def search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]: ...


class FaissIndex:
    """A FAISS index plus the entry metadata, persisted as ``index.faiss`` + ``entries.json``."""

    def __init__(self, index: Any, entries: Sequence[Entry]) -> None:
        self._index = index
        self.entries: Sequence[Entry] = tuple(entries)

    @classmethod
    def build(
        cls,
        vectors: NDArray[np.float32],
        entries: Sequence[Entry],
        *,
        approx_above: int = APPROX_ABOVE,
    ) -> FaissIndex:
        import faiss

        if len(vectors) != len(entries):
            raise GuardError("index build: one entry per vector is required")
        dim = vectors.shape[1] if vectors.ndim == 2 else 0
        index: Any
        if len(vectors) > approx_above:
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = 128
        else:
            index = faiss.IndexFlatIP(dim)
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index, entries)

    def search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        k = max(1, min(k, len(self.entries)))
        if not self.entries:
            shape = (len(queries), 1)
            return np.full(shape, -1.0, dtype=np.float32), np.full(shape, -1, dtype=np.int64)
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores.astype(np.float32), ids.astype(np.int64)

    def vectors(self) -> NDArray[np.float32]:
        """Every indexed vector, in entry order."""
        if not self.entries:
            return np.zeros((0, self._index.d), dtype=np.float32)
        return np.asarray(self._index.reconstruct_n(0, self._index.ntotal), dtype=np.float32)

    def save(self, folder: Path) -> None:
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(folder / "index.faiss"))
        (folder / "entries.json").write_text(json.dumps([asdict(e) for e in self.entries]))

    @classmethod
    def load(cls, folder: Path) -> FaissIndex:
        import faiss

        try:
            index = faiss.read_index(str(folder / "index.faiss"))
            raw = json.loads((folder / "entries.json").read_text())
        except (OSError, RuntimeError, ValueError) as exc:
            raise GuardError(f"cannot load index from {folder}: {exc}") from exc
        entries = [Entry(**item) for item in raw]
        if index.ntotal != len(entries):
            raise GuardError(f"index in {folder} is inconsistent with its entries")
        return cls(index, entries)
