"""Exact per-concept similarity: every segment against every evidence vector, reduced per concept.

The embedding detector asks, per segment and concept, how close the closest in-scope evidence
is and how close the closest hard negative is. One matrix product and a per-concept maximum
(``np.maximum.reduceat`` over the evidence sorted by concept) answer both exactly, with no
top-k cut-off (a FAISS top-64 search gave a concept outside the 64 nearest entries no score at
all). Reading the evidence matrix is most of the cost of a search (100 RWKU people: ~30,000
vectors, 45 MB), and a batch of queries reads it once, so concurrent requests' segments are
scored together (:class:`guards.batching.RowBatcher`; ``benchmarks/guard_latency.py`` and
``benchmarks/line_rate.py`` measure both).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from threadpoolctl import ThreadpoolController

from guards.batching import RowBatcher
from guards.index import Entry

NO_SCORE = -1.0
MAX_QUERIES = 256
# One BLAS thread per product. A few queries are bound by reading the matrix, which a second
# thread does not speed up, and in a busy proxy the other core is serving other requests: on
# this 2-core machine under load, one query over 29,000 vectors took 8 ms on one thread and
# 16 ms on two, 64 queries 57 and 100 ms (threadpoolctl's switch costs ~50 us per call).
_BLAS = ThreadpoolController().select(user_api="blas")


class EvidenceMatrix:
    """The evidence vectors of ``entries`` (rows of ``vectors``), sorted by concept, split into
    in-scope evidence and hard negatives; entries whose concept is not in ``concept_ids`` (or
    whose column is excluded) are left out."""

    def __init__(
        self,
        vectors: np.ndarray,
        entries: Sequence[Entry],
        concept_ids: Sequence[str],
        negative_source: str,
        excluded: Sequence[str] = (),
    ) -> None:
        column = {cid: i for i, cid in enumerate(concept_ids)} | dict.fromkeys(excluded, -1)
        concepts = np.array([column.get(e.concept_id, -1) for e in entries], dtype=np.int64)
        negative = np.array([e.source == negative_source for e in entries], dtype=bool)
        self.n_concepts = len(concept_ids)
        self._sources = [e.source for e in entries]
        self._positive = _Part(vectors, concepts, ~negative, self.n_concepts)
        self._negative = _Part(vectors, concepts, negative, self.n_concepts)
        self._batched = RowBatcher(self._scores, MAX_QUERIES)

    def scores(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query row and concept column: the best in-scope similarity and the best negative
        similarity (``NO_SCORE`` where a concept has none). Concurrent calls share one pass."""
        if not len(queries):
            empty = np.full((0, self.n_concepts), NO_SCORE, dtype=np.float32)
            return empty, empty
        rows = self._batched(list(queries))
        return rows[:, : self.n_concepts], rows[:, self.n_concepts :]

    def best_source(self, query: np.ndarray, concept: int) -> str:
        """The kind of in-scope evidence (name, example, corpus, ...) closest to ``query``."""
        return self._sources[self._positive.best_entry(query, concept)]

    def _scores(self, queries: list[np.ndarray]) -> np.ndarray:
        stacked = np.ascontiguousarray(np.stack(queries), dtype=np.float32)
        with _BLAS.limit(limits=1):
            return np.hstack([self._positive.max_sims(stacked), self._negative.max_sims(stacked)])


class _Part:
    """One kind of evidence, rows grouped by concept, with the start of each concept's group."""

    def __init__(
        self, vectors: np.ndarray, concepts: np.ndarray, keep: np.ndarray, n_concepts: int
    ) -> None:
        kept = np.flatnonzero(keep & (concepts >= 0))
        order = kept[np.argsort(concepts[kept], kind="stable")]
        self._rows = order  # position in the original entries, per row here
        self._matrix = np.ascontiguousarray(vectors[order], dtype=np.float32)
        owner = concepts[order]
        self._present = np.unique(owner)  # concept columns with at least one row
        self._starts = np.searchsorted(owner, self._present)
        ends = [*self._starts[1:], len(owner)] if len(owner) else []
        self._span = {
            int(c): (int(s), int(e))
            for c, s, e in zip(self._present, self._starts, ends, strict=True)
        }
        self._n_concepts = n_concepts

    def max_sims(self, queries: np.ndarray) -> np.ndarray:
        out = np.full((len(queries), self._n_concepts), NO_SCORE, dtype=np.float32)
        if len(self._present):
            sims = queries @ self._matrix.T
            out[:, self._present] = np.maximum.reduceat(sims, self._starts, axis=1)
        return out

    def best_entry(self, query: np.ndarray, concept: int) -> int:
        start, end = self._span[concept]
        return int(self._rows[start + int(np.argmax(self._matrix[start:end] @ query))])
