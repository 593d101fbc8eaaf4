"""TOFU question-answer files: loading with line-level validation, split and author selection."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from evals.baselines.errors import DataFileError

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


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, object]]]:
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    rows: list[tuple[int, dict[str, object]]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFileError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DataFileError(f"{path}:{number}: expected a JSON object")
            rows.append((number, row))
    return rows


def require_str(path: Path, number: int, row: dict[str, object], field: str) -> str:
    """Return `row[field]` if it is a non-empty string, else raise naming file, line and field."""
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        raise DataFileError(f"{path}:{number}: field '{field}' must be a non-empty string")
    return value


def load_qa_jsonl(path: Path) -> list[QAExample]:
    """Load `{question, answer}` JSON Lines; extra fields are ignored."""
    return [
        QAExample(require_str(path, n, row, "question"), require_str(path, n, row, "answer"))
        for n, row in _read_jsonl(path)
    ]


def load_rows(path: Path) -> list[tuple[int, dict[str, object]]]:
    """Raw JSON objects with their line numbers, for loaders that validate richer records."""
    return _read_jsonl(path)


def tofu_path(data_dir: Path, split: str) -> Path:
    """Path of a TOFU split (`full`, `forget01`, `retain99`, `forget01_perturbed`, ...)."""
    if not split.replace("_", "").isalnum():
        raise DataFileError(f"invalid TOFU split name {split!r}")
    return data_dir / "tofu" / f"{split}.jsonl"


def last_authors(examples: list[QAExample], authors: int | None) -> list[QAExample]:
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
