"""TOFU question-answer files for training: loading, split paths and author selection."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from evals.baselines.errors import DataFileError
from evals.jsonl import RowReader, read_rows

T = TypeVar("T")

QA_PER_AUTHOR = 20
"""TOFU stores exactly 20 consecutive question-answer pairs per fictitious author."""

FALLBACK_IDK_PHRASES = (
    "I'm not sure about that.",
    "I don't know the answer to that question.",
    "I have no information about that.",
    "That is something I cannot tell you.",
    "I'm afraid I don't know.",
    "I can't recall anything about that.",
)
"""Used by refusal tuning when TOFU's `idontknow.txt` is not available."""


@dataclass(frozen=True)
class QAExample:
    """One question and the answer the model should give (or be made to forget)."""

    question: str
    answer: str


def load_qa_jsonl(path: Path) -> list[QAExample]:
    """Load `{question, answer}` JSON Lines with the evaluator's reader (errors name the file,
    line and field); extra fields are ignored."""
    readers = (RowReader(path, number, row) for number, row in read_rows(path))
    return [QAExample(r.text("question"), r.text("answer")) for r in readers]


def tofu_path(data_dir: Path, split: str) -> Path:
    """Path of a TOFU split (`full`, `forget01`, `retain99`, `forget01_perturbed`, ...)."""
    if not split.replace("_", "").isalnum():
        raise DataFileError(f"invalid TOFU split name {split!r}")
    return data_dir / "tofu" / f"{split}.jsonl"


def last_authors(examples: list[T], authors: int | None) -> list[T]:
    """Keep the last `authors` TOFU authors of a split.

    TOFU's forget sets are the last authors of `full`, and `retainNN` is the rest in order, so
    `full` with N authors is the forget01 pair plus the last N-2 authors of retain99: a small
    CPU target model and its retain model then share exactly the same retain authors.
    """
    if authors is None:
        return examples
    if authors <= 0:
        raise DataFileError(f"--authors must be positive, got {authors}")
    return examples[-authors * QA_PER_AUTHOR :]


def load_idk_phrases(data_dir: Path | None) -> list[str]:
    """TOFU's 100 refusal phrasings when the data dir has them, else the built-in fallback."""
    if data_dir is not None:
        path = data_dir / "tofu" / "idontknow.txt"
        if path.is_file():
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            phrases = [line for line in lines if line]
            if phrases:
                return phrases
    return list(FALLBACK_IDK_PHRASES)


def with_idk_answers(examples: list[QAExample], phrases: list[str], seed: int) -> list[QAExample]:
    """Replace every answer by a randomly chosen refusal phrasing (seeded, so reproducible)."""
    rng = random.Random(seed)
    return [QAExample(ex.question, rng.choice(phrases)) for ex in examples]
