"""Encoder calls grouped by token length: same vectors, fewer padded tokens."""

from __future__ import annotations

import pytest

from guards.encoder import SentenceTransformerEncoder, length_buckets


def test_a_long_text_gets_a_call_of_its_own() -> None:
    assert length_buckets([32] * 12 + [341]) == [list(range(12)), [12]]


def test_similar_lengths_share_one_call_and_every_index_appears_once() -> None:
    assert length_buckets([27, 9, 13, 9]) == [[1, 3, 2, 0]]
    # 5 short texts padded to 16, 150 alone, 290 and 300 together: 144 + 214 + 664 tokens,
    # cheaper than any other cut (150 with the long pair: 144 + 964)
    assert length_buckets([8, 300, 9, 150, 11, 13, 290, 16]) == [[0, 2, 4, 5, 7], [3], [6, 1]]
    assert length_buckets([]) == []


def test_no_overhead_means_one_call_per_length_and_huge_overhead_one_call() -> None:
    assert len(length_buckets([5, 5, 9, 40], overhead=0)) == 3
    assert length_buckets([5, 9, 40, 400], overhead=10**6) == [[0, 1, 2, 3]]


@pytest.fixture(scope="module")
def encoders() -> tuple[SentenceTransformerEncoder, SentenceTransformerEncoder]:
    return SentenceTransformerEncoder(), SentenceTransformerEncoder(bucketed=False)


def test_bucketed_encoding_gives_the_same_vectors_in_input_order(
    encoders: tuple[SentenceTransformerEncoder, SentenceTransformerEncoder],
) -> None:
    bucketed, one_call = encoders
    long_turn = "The committee reviewed the quarterly figures and the spring schedule. " * 25
    texts = ["Who wrote Carrie?", long_turn, "What is two plus two?", long_turn[:200]]
    counts = bucketed.token_counts(texts)
    assert counts[1] == 256  # truncated at the model's limit, like the model itself
    assert len(length_buckets(counts)) > 1
    got, expected = bucketed.encode(texts), one_call.encode(texts)
    assert got.shape == (4, bucketed.dim)
    assert abs(got - expected).max() < 1e-5
    assert abs(got[0] - one_call.encode(["Who wrote Carrie?"])[0]).max() < 1e-5
