"""The evidence matrix scores every concept exactly, alone or batched with concurrent callers."""

from __future__ import annotations

import threading

import numpy as np

from guards.evidence import NO_SCORE, EvidenceMatrix
from guards.index import Entry

IDS = ["a", "b", "c", "d"]


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _fixture() -> tuple[np.ndarray, list[Entry]]:
    rng = np.random.default_rng(7)
    # Interleaved on purpose: the matrix must not rely on entries arriving grouped by concept.
    owners = ["a", "b", "a", "c", "b", "a", "c", "a", "x", "b"]
    sources = ["name", "corpus", "negative", "example", "negative", "corpus", "corpus",
               "negative", "name", "example"]  # fmt: skip
    vectors = _unit(rng.standard_normal((len(owners), 8)))
    return vectors, [Entry(o, s) for o, s in zip(owners, sources, strict=True)]


def _brute(
    vectors: np.ndarray, entries: list[Entry], query: np.ndarray, negative: bool
) -> list[float]:
    out = []
    for cid in IDS:
        sims = [
            float(v @ query)
            for v, e in zip(vectors, entries, strict=True)
            if e.concept_id == cid and (e.source == "negative") == negative
        ]
        out.append(max(sims) if sims else NO_SCORE)
    return out


def test_scores_equal_a_brute_force_max_per_concept() -> None:
    vectors, entries = _fixture()
    matrix = EvidenceMatrix(vectors, entries, IDS, "negative")
    queries = _unit(np.random.default_rng(1).standard_normal((5, 8)))
    positive, negative = matrix.scores(queries)
    assert positive.shape == negative.shape == (5, len(IDS))
    for row, query in enumerate(queries):
        np.testing.assert_allclose(positive[row], _brute(vectors, entries, query, False), atol=1e-6)
        np.testing.assert_allclose(negative[row], _brute(vectors, entries, query, True), atol=1e-6)
    # "d" has no entries at all, "c" no negatives, "x" is not a listed concept.
    assert (positive[:, 3] == NO_SCORE).all() and (negative[:, 2:] == NO_SCORE).all()


def test_excluded_concepts_get_no_score_and_best_source_names_the_closest_entry() -> None:
    vectors, entries = _fixture()
    matrix = EvidenceMatrix(vectors, entries, IDS, "negative", excluded=["a"])
    positive, negative = matrix.scores(vectors[:3])
    assert (positive[:, 0] == NO_SCORE).all() and (negative[:, 0] == NO_SCORE).all()
    # Each entry is its own nearest neighbour: entry 3 is c's example, entry 9 b's example.
    assert matrix.best_source(vectors[3], 2) == "example"
    assert matrix.best_source(vectors[9], 1) == "example"
    assert matrix.best_source(vectors[1], 1) == "corpus"


def test_an_empty_query_batch_and_an_empty_matrix() -> None:
    vectors, entries = _fixture()
    positive, negative = EvidenceMatrix(vectors, entries, IDS, "negative").scores(
        np.zeros((0, 8), dtype=np.float32)
    )
    assert positive.shape == negative.shape == (0, len(IDS))
    empty = EvidenceMatrix(np.zeros((0, 8), dtype=np.float32), [], IDS, "negative")
    positive, _ = empty.scores(vectors[:2])
    assert (positive == NO_SCORE).all()


def test_concurrent_callers_get_their_own_rows() -> None:
    vectors, entries = _fixture()
    matrix = EvidenceMatrix(vectors, entries, IDS, "negative")
    queries = [_unit(np.random.default_rng(i).standard_normal((i % 3 + 1, 8))) for i in range(24)]
    expected = [matrix.scores(q)[0] for q in queries]
    got: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        got[i] = matrix.scores(queries[i])[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(queries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, want in enumerate(expected):
        np.testing.assert_allclose(got[i], want, atol=1e-6)
