"""Concept files: a valid file loads, and every kind of bad input names its file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guards.concepts import ConceptList, Policy, load_concepts, parse_concepts, validate_concepts
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


SECRET = "root:x:0:0 the outside file's contents"


@pytest.fixture
def corpora(tmp_path: Path) -> Path:
    """A corpus folder holding ``ok.txt`` and ``sub/deep.txt``, next to a secret file outside it."""
    folder = tmp_path / "corpora"
    (folder / "sub").mkdir(parents=True)
    (folder / "ok.txt").write_text("Alpha kept a small boat in the harbour at Kelmarsh.")
    (folder / "sub" / "deep.txt").write_text("Alpha sold the boat to a fisherman in spring.")
    (tmp_path / "secret.txt").write_text(SECRET)
    (folder / "out-link.txt").symlink_to(tmp_path / "secret.txt")
    (folder / "in-link.txt").symlink_to(folder / "sub" / "deep.txt")
    return folder


def confined(paths: list[str], folder: Path | None) -> ConceptList:
    data = {"concepts": [{"id": "alpha", "name": "Alpha", "forget_corpus": paths}]}
    return validate_concepts(data, source="<request body>", base_dir=folder, confined=True)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/etc/passwd", "relative"),
        ("{secret}", "relative"),
        ("../secret.txt", "outside"),
        ("../../../../etc/hostname", "outside"),
        ("sub/../../secret.txt", "outside"),
        ("out-link.txt", "outside"),
        ("missing.txt", "not found"),
        ("sub", "not found"),
        ("bad\x00name.txt", "usable"),
    ],
    ids=[
        "etc",
        "absolute",
        "dotdot",
        "deep-dotdot",
        "sub-dotdot",
        "symlink",
        "missing",
        "dir",
        "nul",
    ],
)
def test_confined_corpus_paths_stay_in_the_folder(corpora: Path, path: str, reason: str) -> None:
    path = path.format(secret=corpora.parent / "secret.txt")
    with pytest.raises(ConceptFileError) as caught:
        confined(["ok.txt", path], corpora)
    assert caught.value.field == "concepts[alpha].forget_corpus[1]"
    assert caught.value.source == "<request body>" and reason in caught.value.reason
    assert "root:x" not in str(caught.value)


def test_confined_corpus_files_need_a_folder(corpora: Path) -> None:
    with pytest.raises(ConceptFileError) as caught:
        confined(["ok.txt"], None)
    assert caught.value.field == "concepts[alpha].forget_corpus[0]"
    assert "forget_text" in caught.value.reason
    assert confined([], None).concepts[0].forget_corpus == []


def test_confined_files_inside_the_folder_are_read(corpora: Path) -> None:
    concepts = confined(["ok.txt", "sub/deep.txt", "in-link.txt"], corpora)
    corpus = [t for s, t in evidence_texts(concepts, concepts.concepts[0]) if s == "corpus"]
    assert corpus == [
        "Alpha kept a small boat in the harbour at Kelmarsh.",
        "Alpha sold the boat to a fisherman in spring.",
        "Alpha sold the boat to a fisherman in spring.",
    ]


def test_a_confined_concept_keeps_its_folder_in_a_list_read_from_a_file(corpora: Path) -> None:
    """Added over the API to a file-loaded list: each concept's corpus resolves where it was
    validated, the file's relative to the file, the API's inside the corpus folder."""
    file_list = load_concepts(CONCEPTS_FILE)
    added = confined(["ok.txt"], corpora).concepts[0]
    merged = file_list.model_copy(update={"concepts": [*file_list.concepts, added]})
    texts = {
        c.id: [t for s, t in evidence_texts(merged, c) if s == "corpus"] for c in merged.concepts
    }
    assert texts["alpha"] == ["Alpha kept a small boat in the harbour at Kelmarsh."]
    assert all(texts[c.id] for c in file_list.concepts if c.forget_corpus)


def test_a_link_changed_after_validation_is_refused_on_read(corpora: Path) -> None:
    concepts = confined(["ok.txt", "in-link.txt"], corpora)
    (corpora / "in-link.txt").unlink()
    (corpora / "in-link.txt").symlink_to(corpora.parent / "secret.txt")
    with pytest.raises(ConceptFileError, match="outside the corpus folder"):
        list(evidence_texts(concepts, concepts.concepts[0]))
    with pytest.raises(ConceptFileError, match="outside the corpus folder"):
        concepts.content_hash()


def test_a_file_list_is_trusted_config_and_may_name_files_anywhere(corpora: Path) -> None:
    path = corpora / "lists" / "concepts.yaml"
    path.parent.mkdir()
    path.write_text(HEADER + f"    forget_corpus: [../ok.txt, {corpora / 'sub' / 'deep.txt'}]\n")
    concepts = load_concepts(path)
    assert len([s for s, _ in evidence_texts(concepts, concepts.concepts[0]) if s == "corpus"]) == 2
