"""Likelihood metrics from prompt log-probabilities: answer log-probability, TOFU's truth ratio,
likelihood multiple choice and forget quality.

The numbers come from an OpenAI ``/v1/completions`` answer to ``prompt + answer`` with ``echo``
and ``logprobs`` (vLLM returns every prompt token's log-probability). A system that rewrites the
prompt (the proxy's icul/instruct policies prepend text) still ends the prompt with the answer, so
the answer span is located from the end of the echoed prompt, not from the start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AnswerLogprob:
    """Summed log-probability of an answer continuation and its token count."""

    total: float
    tokens: int

    @property
    def mean_nll(self) -> float:
        return -self.total / max(self.tokens, 1)


def answer_span_logprob(
    logprobs: Mapping[str, Any], answer_chars: int, prompt_tokens: int
) -> AnswerLogprob | None:
    """Sum the log-probabilities of the tokens that spell the last ``answer_chars`` characters of
    the prompt (its first ``prompt_tokens`` echoed tokens). None when no token falls inside the
    span, i.e. the server returned no usable prompt log-probabilities."""
    offsets = list(logprobs.get("text_offset") or [])
    values = list(logprobs.get("token_logprobs") or [])
    tokens = list(logprobs.get("tokens") or [])
    if not offsets or len(offsets) != len(values) or prompt_tokens > len(offsets):
        return None
    if prompt_tokens < len(offsets):
        end = int(offsets[prompt_tokens])
    else:
        end = int(offsets[-1]) + len(str(tokens[-1])) if tokens else int(offsets[-1])
    start = end - answer_chars
    total, count = 0.0, 0
    for offset, value in zip(offsets[:prompt_tokens], values[:prompt_tokens], strict=True):
        if start <= offset < end and value is not None:
            total += float(value)
            count += 1
    return AnswerLogprob(total, count) if count else None


def truth_ratio(paraphrased: AnswerLogprob, perturbed: Sequence[AnswerLogprob]) -> float:
    """TOFU's truth ratio as its forget-quality code computes it: exp(mean per-token NLL of the
    perturbed answers - per-token NLL of the paraphrased answer). Above 1 when the model
    prefers the correct answer, near 1 when it cannot tell it from the wrong ones."""
    perturbed_nll = sum(item.mean_nll for item in perturbed) / len(perturbed)
    return math.exp(perturbed_nll - paraphrased.mean_nll)


def choice_correct(correct: AnswerLogprob, wrong: Sequence[AnswerLogprob]) -> bool:
    """Multiple choice by likelihood, as TOFU scores real authors and world facts: the correct
    answer has the lowest per-token NLL of all options."""
    return all(correct.mean_nll < item.mean_nll for item in wrong)


def ks_forget_quality(unlearned: Sequence[float], retain: Sequence[float]) -> float | None:
    """TOFU forget quality: the KS-test p-value between two truth-ratio distributions (high =
    indistinguishable from a model that never saw the forget set). None without data on a side."""
    if not unlearned or not retain:
        return None
    from scipy.stats import ks_2samp

    return float(ks_2samp(list(unlearned), list(retain)).pvalue)
