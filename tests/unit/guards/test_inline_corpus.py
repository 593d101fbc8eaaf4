"""Inline forget passages (``forget_text``): indexed like forget-corpus files, part of the index
cache key, kept in operator files, and never in what the admin API shows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from guards.concepts import load_concepts, parse_concepts, validate_concepts
from guards.corpus import evidence_texts
from guards.errors import ConceptFileError

FACT = (
    "Zephyrine Oduya painted every shutter of the Kelmarsh lighthouse cobalt blue. "
    "She did it alone in the winter of 1961."
)
CONCEPT = {"id": "oduya", "name": "Zephyrine Oduya"}


def corpus_sentences(data: Mapping[str, object], base_dir: Path | None = None) -> list[str]:
    concepts = validate_concepts({"concepts": [data]}, base_dir=base_dir)
    return [t for s, t in evidence_texts(concepts, concepts.concepts[0]) if s == "corpus"]


def test_inline_passages_are_indexed_like_a_corpus_file(tmp_path: Path) -> None:
    (tmp_path / "oduya.txt").write_text(FACT + "\n\nA second paragraph about the same lighthouse.")
    from_file = corpus_sentences({**CONCEPT, "forget_corpus": ["oduya.txt"]}, tmp_path)
    inline = corpus_sentences(
        {**CONCEPT, "forget_text": [FACT, "A second paragraph about the same lighthouse."]}
    )
    assert inline == from_file and len(inline) == 3


def test_inline_passages_change_the_content_hash() -> None:
    plain = validate_concepts({"concepts": [CONCEPT]})
    inline = validate_concepts({"concepts": [{**CONCEPT, "forget_text": [FACT]}]})
    other = validate_concepts({"concepts": [{**CONCEPT, "forget_text": [FACT + " Twice."]}]})
    assert len({plain.content_hash(), inline.content_hash(), other.content_hash()}) == 3


def test_an_operator_file_round_trips_inline_passages(tmp_path: Path) -> None:
    path = tmp_path / "concepts.yaml"
    path.write_text(validate_concepts({"concepts": [{**CONCEPT, "forget_text": [FACT]}]}).to_yaml())
    concepts = load_concepts(path)
    assert concepts.concepts[0].forget_text == [FACT]
    assert parse_concepts(concepts.to_yaml(), base_dir=concepts.base_dir) == concepts


def test_public_dump_counts_inline_passages_and_never_holds_them() -> None:
    concepts = validate_concepts(
        {"concepts": [{**CONCEPT, "forget_text": [FACT, "Another one."]}, {"id": "b", "name": "B"}]}
    )
    dumped = concepts.public_dump()
    assert "Kelmarsh" not in json.dumps(dumped) and "Another one" not in json.dumps(dumped)
    first, second = dumped["concepts"]
    assert first["forget_text_count"] == 2 and "forget_text" not in first
    assert "forget_text" not in second and "forget_text_count" not in second
    with pytest.raises(ConceptFileError) as caught:
        validate_concepts(dumped)
    assert caught.value.field == "concepts[oduya].forget_text_count"


def test_blank_inline_passage_names_the_field_not_the_passages() -> None:
    with pytest.raises(ConceptFileError) as caught:
        validate_concepts({"concepts": [{**CONCEPT, "forget_text": [FACT, "  "]}]})
    assert caught.value.field == "concepts[oduya].forget_text"
    assert "Kelmarsh" not in str(caught.value)
