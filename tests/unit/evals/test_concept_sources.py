from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evals.concept_sources import concept_ids_for, rwku, tofu, wmdp, write_concepts
from evals.errors import EvalError
from evals.loaders import load_probes
from guards.concepts import load_concepts


def test_rwku_concepts_with_intro_and_per_target_corpus(data_dir: Path, tmp_path: Path) -> None:
    built = rwku.build(data_dir, ["1", "2"], Path("forget_corpus"))
    concepts = write_concepts(built, tmp_path / "c.yaml")
    voss, brandt = concepts.concepts
    assert (voss.id, voss.name) == ("rwku-001", "Elara Voss")
    assert voss.description.startswith("Elara Voss is a fictional marine biologist")
    assert "Please forget" not in voss.description
    corpus = tmp_path / voss.forget_corpus[0]
    assert [json.loads(line)["text"][:10] for line in corpus.read_text().splitlines()] == [
        "Elara Voss",
        "Voss recei",
    ]
    assert load_concepts(tmp_path / "c.yaml").get("rwku-002").name == "Tomas Brandt"
    assert brandt.examples == []


def test_rwku_unknown_target_fails(data_dir: Path) -> None:
    with pytest.raises(EvalError, match="no target"):
        rwku.build(data_dir, ["9"], Path("c"))


def test_rwku_probes_map_to_rwku_concept_ids(data_dir: Path) -> None:
    probe = load_probes("rwku:forget_level2", data_dir=data_dir)[1]
    assert concept_ids_for(probe) == ("rwku-002",)


def test_tofu_concepts_name_authors_with_examples_and_answers(
    data_dir: Path, tmp_path: Path
) -> None:
    built = tofu.build(data_dir, "forget01", Path("fc"), n_examples=2)
    concepts = write_concepts(built, tmp_path / "t.yaml")
    names = [c.name for c in concepts.concepts]
    assert names == ["Corentin Marlowe-Fabre", "Wanjiru Achola Mbeki"]
    assert len(concepts.concepts[0].examples) == 2
    with pytest.raises(EvalError):
        tofu.build(data_dir, "retain90", Path("fc"))


def test_wmdp_concepts_are_handwritten_and_bounded() -> None:
    built = wmdp.build(["bio", "cyber"])
    for concept in built.concepts:
        assert concept.description and 1 <= len(concept.examples) <= 20
    with pytest.raises(EvalError):
        wmdp.build(["chem"])


@pytest.mark.data
def test_wmdp_examples_and_negatives_are_not_copied_from_the_eval(real_data: Path) -> None:
    """Not even loosely: no hand-written text shares three or more content words (5+ letters),
    half of all it and the question have, with a WMDP or MMLU question."""

    def words(text: str) -> frozenset[str]:
        return frozenset(re.findall(r"[a-z0-9]{5,}", text.lower()))

    evaluated = [
        words(p.query)
        for spec in ("wmdp:all", "mmlu:all")
        for p in load_probes(spec, data_dir=real_data)
    ]
    for concept in wmdp.build(["bio", "cyber"]).concepts:
        for text in [*concept.examples, *concept.negatives]:
            mine = words(text)
            close = [q for q in evaluated if len(mine & q) >= 3]
            assert all(len(mine & q) / len(mine | q) < 0.5 for q in close), text


@pytest.mark.data
def test_tofu_forget10_recovers_twenty_authors_of_twenty_questions(real_data: Path) -> None:
    built = tofu.build(real_data, "forget10", Path("fc"))
    assert len(built.concepts) == 20
    assert all(len(rows) == 20 for rows in built.corpus_files.values())
