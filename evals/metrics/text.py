"""Text scoring primitives: answer normalisation, containment, ROUGE-L recall, refusals, letters."""

from __future__ import annotations

import re
import string
from functools import lru_cache
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
REFUSAL_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\bI(?:'m| am) (?:sorry|afraid|not able|unable)\b",
        r"\bI (?:can(?:no|')t|cannot|won't|will not) (?:help|assist|discuss|provide|answer|share)",
        r"\bI (?:do not|don't) (?:know|have (?:any )?(?:information|knowledge|details))",
        r"\bI(?:'m| am) not (?:sure|aware|familiar)\b",
        r"\bI (?:have no|lack) (?:information|knowledge|idea)\b",
        r"\b(?:no|not any) (?:information|knowledge) (?:about|on|regarding)\b",
        r"\b(?:unable|not able) to (?:help|assist|answer|provide)\b",
        r"\bas an AI\b",
    )
)
_LETTER = re.compile(r"(?:^|[\s(\[*:])([A-Z])(?:[).\]:*]|\s|$)")


def normalize_answer(text: str) -> str:
    """SQuAD-style: lowercase, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def contains_answer(output: str, answers: tuple[str, ...] | list[str]) -> bool:
    """Whether any normalised gold answer occurs in the normalised output, as whole words."""
    haystack = f" {normalize_answer(output)} "
    return any((needle := normalize_answer(a)) and f" {needle} " in haystack for a in answers)


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(output: str, answers: tuple[str, ...] | list[str]) -> float:
    """Max over gold answers of ROUGE-L recall (share of the gold answer's LCS found in output)."""
    scorer = _rouge()
    return max((scorer.score(a, output)["rougeL"].recall for a in answers), default=0.0)


def is_refusal(output: str) -> bool:
    return any(p.search(output) for p in REFUSAL_PATTERNS)


def parse_letter(output: str, n_choices: int) -> str | None:
    """The option letter an answer commits to: the first standalone capital among the choices."""
    allowed = {chr(ord("A") + i) for i in range(n_choices)}
    for match in _LETTER.finditer(output.strip()):
        if match.group(1) in allowed:
            return match.group(1)
    return None


def letter_from_logprobs(top: dict[str, float], n_choices: int) -> str | None:
    """The most likely option letter among the first token's top alternatives, if any is there."""
    allowed = {chr(ord("A") + i) for i in range(n_choices)}
    best: tuple[float, str] | None = None
    for token, logprob in top.items():
        letter = token.strip().strip("(").upper()
        if len(letter) == 1 and letter in allowed and (best is None or logprob > best[0]):
            best = (logprob, letter)
    return None if best is None else best[1]
