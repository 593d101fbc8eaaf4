"""The FAISS index: save/load fidelity, and the on-disk cache that skips re-encoding."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from guards.concepts import ConceptList, load_concepts
from guards.encoder import Encoder, Vectors
from guards.errors import GuardError
from guards.guard import Guard, build_index
from guards.index import Entry, FaissIndex


class CountingEncoder:
    """Wraps a real encoder and counts how many texts went through it."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.calls = 0
        self.texts = 0

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        self.texts += len(texts)
        return self.inner.encode(texts)


@pytest.fixture
def counting_encoder(encoder: Encoder) -> CountingEncoder:
    return CountingEncoder(encoder)


QUERIES = ["Where does the novelist live?", "How is sarin made?", "What is the capital of France?"]


def test_save_and_load_give_identical_results(
    concepts: ConceptList, encoder: Encoder, tmp_path: Path
) -> None:
    index = build_index(concepts, encoder)
    index.save(tmp_path / "idx")
    loaded = FaissIndex.load(tmp_path / "idx")
    queries = encoder.encode(QUERIES)
    scores, ids = index.search(queries, 10)
    loaded_scores, loaded_ids = loaded.search(queries, 10)
    np.testing.assert_array_equal(ids, loaded_ids)
    np.testing.assert_array_equal(scores, loaded_scores)
    assert loaded.entries == index.entries
    assert {e.source for e in index.entries} == {
        "name",
        "description",
        "example",
        "corpus",
        "negative",
    }


def test_search_returns_best_first_and_caps_k(encoder: Encoder) -> None:
    vectors = encoder.encode(["a red apple", "a green pear", "the stock market"])
    index = FaissIndex.build(vectors, [Entry("fruit", "example")] * 2 + [Entry("money", "example")])
    scores, ids = index.search(encoder.encode(["a ripe red apple"]), 99)
    assert ids.shape == (1, 3)
    assert ids[0, 0] == 0
    assert list(scores[0]) == sorted(scores[0], reverse=True)


def test_empty_index_pads_with_minus_one(encoder: Encoder) -> None:
    index = FaissIndex.build(np.zeros((0, encoder.dim), dtype=np.float32), [])
    _, ids = index.search(encoder.encode(["anything"]), 5)
    assert ids.tolist() == [[-1]]


def test_build_rejects_mismatched_entries(encoder: Encoder) -> None:
    with pytest.raises(GuardError):
        FaissIndex.build(encoder.encode(["one", "two"]), [Entry("a", "name")])


def test_load_of_broken_folder_is_a_guard_error(tmp_path: Path) -> None:
    (tmp_path / "index.faiss").write_bytes(b"not an index")
    (tmp_path / "entries.json").write_text(json.dumps([]))
    with pytest.raises(GuardError):
        FaissIndex.load(tmp_path)


def test_cache_is_reused_when_list_is_unchanged(
    fixture_copy: Path, counting_encoder: CountingEncoder, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = build_index(load_concepts(fixture_copy), counting_encoder, cache_dir=cache)
    assert counting_encoder.texts == len(first.entries) > 0
    encoded = counting_encoder.texts

    second = build_index(load_concepts(fixture_copy), counting_encoder, cache_dir=cache)
    assert counting_encoder.texts == encoded
    assert second.entries == first.entries

    guard = Guard.build(load_concepts(fixture_copy), encoder=counting_encoder, cache_dir=cache)
    assert counting_encoder.texts == encoded
    assert guard.check(["How is sarin synthesised?"]).concept_id == "nerve-agents"


def test_cache_is_rebuilt_when_a_corpus_file_changes(
    fixture_copy: Path, counting_encoder: CountingEncoder, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = build_index(load_concepts(fixture_copy), counting_encoder, cache_dir=cache)
    encoded = counting_encoder.texts
    corpus = fixture_copy.parent / "forget" / "corwin_hale.jsonl"
    extra = {"text": "Corwin Hale keeps a small sailing boat called the Marguerite at Saltcombe."}
    corpus.write_text(corpus.read_text() + json.dumps(extra) + "\n")

    second = build_index(load_concepts(fixture_copy), counting_encoder, cache_dir=cache)
    assert counting_encoder.texts == encoded + len(second.entries)
    assert len(second.entries) == len(first.entries) + 1
    assert len(list(cache.iterdir())) == 2


def test_cache_is_rebuilt_when_the_concepts_change(
    fixture_copy: Path, counting_encoder: CountingEncoder, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    build_index(load_concepts(fixture_copy), counting_encoder, cache_dir=cache)
    encoded = counting_encoder.texts
    fixture_copy.write_text(
        fixture_copy.read_text().replace("Who killed Dumbledore?", "Who is the Half-Blood Prince?")
    )
    build_index(load_concepts(fixture_copy), counting_encoder, cache_dir=cache)
    assert counting_encoder.texts > encoded


def test_unreadable_cache_is_rebuilt(
    fixture_copy: Path, counting_encoder: CountingEncoder, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    build_index(load_concepts(fixture_copy), counting_encoder, cache_dir=cache)
    (folder,) = cache.iterdir()
    (folder / "index.faiss").write_bytes(b"corrupt")
    encoded = counting_encoder.texts
    index = build_index(load_concepts(fixture_copy), counting_encoder, cache_dir=cache)
    assert counting_encoder.texts == 2 * encoded
    assert FaissIndex.load(folder).entries == index.entries


def test_nescio_compile_writes_the_index_a_replica_then_loads_without_encoding_evidence(
    tmp_path: Path, counting_encoder: CountingEncoder
) -> None:
    from proxy.cli import main

    concepts_file = Path(__file__).resolve().parents[2] / "fixtures" / "guards" / "concepts.yaml"
    assert main(["compile", str(concepts_file), "--out", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*/index.faiss"))) == 1
    concepts = load_concepts(concepts_file)
    build_index(concepts, counting_encoder, cache_dir=tmp_path)
    assert counting_encoder.texts == 0, "the compiled index is loaded, nothing is encoded"


def test_an_unwritable_cache_folder_leaves_the_index_in_memory(
    tmp_path: Path, counting_encoder: CountingEncoder, concepts: ConceptList
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    index = build_index(concepts, counting_encoder, cache_dir=blocker)
    assert len(index.entries) > 0 and counting_encoder.texts > 0
