"""Concept files: a valid file loads, and every kind of bad input names its file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guards.concepts import Policy, load_concepts, parse_concepts
from guards.corpus import evidence_texts
from guards.errors import ConceptFileError

REPO = Path(__file__).resolve().parents[3]
CONCEPTS_FILE = REPO / "tests" / "fixtures" / "guards" / "concepts.yaml"
EXAMPLE_FILE = REPO / "examples" / "concepts.yaml"
HEADER = "version: 1\nconcepts:\n  - id: alpha\n    name: Alpha\n"


def load_text(tmp_path: Path, text: str) -> ConceptFileError:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConceptFileError) as caught:
        load_concepts(path)
    assert caught.value.source == str(path)
    assert str(path) in str(caught.value)
    return caught.value


@pytest.mark.parametrize("path", [CONCEPTS_FILE, EXAMPLE_FILE], ids=["fixture", "example"])
def test_valid_files_load(path: Path) -> None:
    concepts = load_concepts(path)
    assert len(concepts.concepts) == 3
    first = concepts.concepts[0]
    assert concepts.policy_of(first) is Policy.ICUL
    assert first.forget_corpus and concepts.corpus_path(first.forget_corpus[0]).is_file()


def test_inherited_defaults_and_overrides() -> None:
    concepts = load_concepts(CONCEPTS_FILE)
    hp = concepts.get("harry-potter")
    hale = concepts.get("corwin-hale")
    assert concepts.refusal_of(hp) == "I can't discuss those books."
    assert concepts.refusal_of(hale) == "Sorry, I can't help with that."
    assert concepts.threshold_of(hale) == pytest.approx(0.55)


def test_bad_policy_names_line_and_field(tmp_path: Path) -> None:
    error = load_text(tmp_path, HEADER + "    policy: explode\n")
    assert (error.line, error.field) == (5, "concepts[alpha].policy")
    assert "refuse" in error.reason


def test_bad_match_names_line_and_field(tmp_path: Path) -> None:
    error = load_text(tmp_path, HEADER + "    match: closest\n")
    assert (error.line, error.field) == (5, "concepts[alpha].match")
    assert "centroid" in error.reason
    assert parse_concepts(HEADER + "    match: centroid\n").concepts[0].match == "centroid"


def test_unknown_field(tmp_path: Path) -> None:
    error = load_text(tmp_path, HEADER + "    aliases: [A]\n    colour: red\n")
    assert (error.line, error.field) == (6, "concepts[alpha].colour")


def test_duplicate_id_points_at_second_occurrence(tmp_path: Path) -> None:
    error = load_text(tmp_path, HEADER + "  - id: beta\n    name: B\n  - id: alpha\n    name: C\n")
    assert (error.line, error.field) == (7, "concepts[alpha].id")
    assert "duplicate" in error.reason


@pytest.mark.parametrize("value", ["1.5", "-2", "2"])
def test_threshold_out_of_range(tmp_path: Path, value: str) -> None:
    error = load_text(tmp_path, HEADER + f"    threshold: {value}\n")
    assert (error.line, error.field) == (5, "concepts[alpha].threshold")


def test_threshold_word_other_than_calibrated(tmp_path: Path) -> None:
    error = load_text(tmp_path, HEADER + "    threshold: high\n")
    assert (error.line, error.field) == (5, "concepts[alpha].threshold")


def test_bad_default_names_defaults_field(tmp_path: Path) -> None:
    error = load_text(tmp_path, "version: 1\ndefaults:\n  threshold: 3\nconcepts: []\n")
    assert (error.line, error.field) == (3, "defaults.threshold")


def test_missing_forget_corpus_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("present")
    error = load_text(tmp_path, HEADER + "    forget_corpus:\n      - a.txt\n      - nope.txt\n")
    assert (error.line, error.field) == (7, "concepts[alpha].forget_corpus[1]")
    assert "nope.txt" in error.reason


def test_missing_required_name(tmp_path: Path) -> None:
    error = load_text(tmp_path, "concepts:\n  - id: alpha\n    aliases: [x]\n")
    assert error.line == 2
    assert error.field == "concepts[alpha].name"


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    error = load_text(tmp_path, HEADER + "    aliases: [A, B\n    policy: refuse\n")
    assert error.line is not None and error.line >= 5
    assert "invalid YAML" in error.reason


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_mapping(tmp_path: Path, text: str) -> None:
    error = load_text(tmp_path, text)
    assert error.line == 1
    assert "mapping" in error.reason


def test_unreadable_file_is_a_concept_file_error(tmp_path: Path) -> None:
    with pytest.raises(ConceptFileError, match="cannot read"):
        load_concepts(tmp_path / "absent.yaml")


def test_bad_jsonl_corpus_line_names_corpus_file_and_line(tmp_path: Path) -> None:
    corpus = tmp_path / "facts.jsonl"
    corpus.write_text(json.dumps({"text": "Alpha lives in a house by the sea."}) + "\n\n{oops\n")
    path = tmp_path / "c.yaml"
    path.write_text(HEADER + "    forget_corpus: [facts.jsonl]\n")
    concepts = load_concepts(path)
    with pytest.raises(ConceptFileError) as caught:
        list(evidence_texts(concepts, concepts.concepts[0]))
    assert caught.value.source == str(corpus)
    assert caught.value.line == 3


def test_jsonl_corpus_line_without_text_field(tmp_path: Path) -> None:
    (tmp_path / "facts.jsonl").write_text(json.dumps({"body": "no text field"}) + "\n")
    path = tmp_path / "c.yaml"
    path.write_text(HEADER + "    forget_corpus: [facts.jsonl]\n")
    concepts = load_concepts(path)
    with pytest.raises(ConceptFileError) as caught:
        list(evidence_texts(concepts, concepts.concepts[0]))
    assert (caught.value.line, caught.value.field) == (1, "text")


def test_to_yaml_round_trips() -> None:
    concepts = load_concepts(CONCEPTS_FILE)
    again = parse_concepts(concepts.to_yaml(), base_dir=CONCEPTS_FILE.parent)
    assert again == concepts
    assert again.content_hash() == concepts.content_hash()


def test_messages_never_carry_concept_contents(tmp_path: Path) -> None:
    secret = "lives at 14 Juniper Lane"
    error = load_text(tmp_path, HEADER + f"    description: {secret}\n    policy: nope\n")
    assert secret not in str(error)


def test_subset_keeps_defaults_and_corpus_folder_in_the_order_asked() -> None:
    concepts = load_concepts(CONCEPTS_FILE)
    ids = [c.id for c in concepts.concepts][::-1][:2]
    subset = concepts.subset(ids)
    assert [c.id for c in subset.concepts] == ids
    assert subset.defaults == concepts.defaults and subset.base_dir == concepts.base_dir
    with pytest.raises(KeyError):
        concepts.subset(["no-such-concept"])
