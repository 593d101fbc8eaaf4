from __future__ import annotations

from pathlib import Path

import pytest

from evals.baselines.data import (
    FALLBACK_IDK_PHRASES,
    QA_PER_AUTHOR,
    QAExample,
    last_authors,
    load_idk_phrases,
    load_qa_jsonl,
    with_idk_answers,
)
from evals.baselines.errors import DataFileError
from evals.errors import ProbeFileError


def test_load_qa_reports_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n\n{"question": "q2"}\n', encoding="utf-8")
    with pytest.raises(ProbeFileError, match=r"qa\.jsonl:3: field 'answer'"):
        load_qa_jsonl(path)


def test_load_qa_reports_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(ProbeFileError, match=r"qa\.jsonl:1: invalid JSON"):
        load_qa_jsonl(path)


def test_load_qa_reads_examples(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "q", "answer": "a", "extra": 1}\n', encoding="utf-8")
    assert load_qa_jsonl(path) == [QAExample("q", "a")]


def test_last_authors_keeps_trailing_author_blocks() -> None:
    examples = [QAExample(f"q{i}", "a") for i in range(3 * QA_PER_AUTHOR)]
    kept = last_authors(examples, 2)
    assert kept == examples[QA_PER_AUTHOR:]
    assert last_authors(examples, None) == examples
    with pytest.raises(DataFileError):
        last_authors(examples, 0)


def test_idk_phrases_from_data_dir_else_fallback(tmp_path: Path) -> None:
    assert load_idk_phrases(tmp_path) == list(FALLBACK_IDK_PHRASES)
    (tmp_path / "tofu").mkdir()
    (tmp_path / "tofu" / "idontknow.txt").write_text("No idea.\n\nBeats me.\n", encoding="utf-8")
    assert load_idk_phrases(tmp_path) == ["No idea.", "Beats me."]


def test_idk_answers_are_seeded_and_replace_every_answer() -> None:
    examples = [QAExample(f"q{i}", "secret") for i in range(20)]
    first = with_idk_answers(examples, ["x", "y", "z"], seed=3)
    assert first == with_idk_answers(examples, ["x", "y", "z"], seed=3)
    assert all(ex.answer in {"x", "y", "z"} for ex in first)
    assert [ex.question for ex in first] == [ex.question for ex in examples]
