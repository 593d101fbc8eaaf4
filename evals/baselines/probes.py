"""Probe sets for `compare`: TOFU perturbed files validated at load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evals.baselines.data import load_rows, require_str
from evals.baselines.errors import DataFileError


@dataclass(frozen=True)
class PerturbedQA:
    """A question, its correct answer, a paraphrase of it (forget sets only) and wrong answers."""

    question: str
    answer: str
    paraphrased_answer: str | None
    perturbed_answers: tuple[str, ...]


def load_perturbed(path: Path, *, need_paraphrase: bool) -> list[PerturbedQA]:
    """Load `{question, answer, [paraphrased_answer], perturbed_answer: [..]}` JSON Lines."""
    items = []
    for number, row in load_rows(path):
        wrong = row.get("perturbed_answer")
        if not isinstance(wrong, list) or not wrong or not all(isinstance(w, str) for w in wrong):
            raise DataFileError(
                f"{path}:{number}: field 'perturbed_answer' must be a non-empty list of strings"
            )
        paraphrase = (
            require_str(path, number, row, "paraphrased_answer") if need_paraphrase else None
        )
        items.append(
            PerturbedQA(
                require_str(path, number, row, "question"),
                require_str(path, number, row, "answer"),
                paraphrase,
                tuple(str(w) for w in wrong),
            )
        )
    return items
