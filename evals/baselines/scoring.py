"""Scoring a served model through the OpenAI HTTP API: ROUGE-L, answer log-probabilities,
truth ratios and multiple-choice accuracy.

Kept here until the evaluator package (`evals/`) exposes shared metrics; these functions only
need a base URL, so they grade a vLLM-served checkpoint and the proxy alike.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from evals.baselines.errors import ServerError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class AnswerLogprob:
    """Summed log-probability of an answer continuation and its token count."""

    total: float
    tokens: int

    @property
    def mean_nll(self) -> float:
        return -self.total / max(self.tokens, 1)


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    if response.status_code != 200:
        raise ServerError(f"POST {path} answered {response.status_code}: {response.text[:300]}")
    payload: dict[str, Any] = response.json()
    return payload


async def generate(client: httpx.AsyncClient, model: str, question: str, max_tokens: int) -> str:
    """Greedy chat answer to one user question."""
    payload = await _post(
        client,
        "/chat/completions",
        {
            "model": model,
            "messages": [{"role": "user", "content": question}],
            "temperature": 0.0,
            "max_tokens": max_tokens,
        },
    )
    return str(payload["choices"][0]["message"]["content"] or "")


async def answer_logprob(
    client: httpx.AsyncClient, model: str, prompt: str, answer: str
) -> AnswerLogprob:
    """Log-probability of `answer` after the already templated `prompt`.

    Uses `/v1/completions` with `echo` and `logprobs`, which returns the prompt tokens'
    log-probabilities; tokens whose text offset falls inside the answer are summed.
    """
    payload = await _post(
        client,
        "/completions",
        {
            "model": model,
            "prompt": prompt + answer,
            "echo": True,
            "logprobs": 1,
            "max_tokens": 1,
            "temperature": 0.0,
        },
    )
    logprobs = payload["choices"][0]["logprobs"]
    start, end = len(prompt), len(prompt) + len(answer)
    total, tokens = 0.0, 0
    for offset, value in zip(logprobs["text_offset"], logprobs["token_logprobs"], strict=True):
        if start <= offset < end and value is not None:
            total += float(value)
            tokens += 1
    if tokens == 0:
        raise ServerError("the server returned no log-probabilities for the answer tokens")
    return AnswerLogprob(total, tokens)


def truth_ratio(paraphrased: AnswerLogprob, perturbed: Sequence[AnswerLogprob]) -> float:
    """TOFU's truth ratio as its forget-quality code computes it: exp(mean per-token NLL of the
    perturbed answers - per-token NLL of the paraphrased answer). Above 1 when the model
    prefers the correct answer, near 1 when it cannot tell it from the wrong ones."""
    perturbed_nll = sum(item.mean_nll for item in perturbed) / len(perturbed)
    return math.exp(perturbed_nll - paraphrased.mean_nll)


def choice_correct(correct: AnswerLogprob, wrong: Sequence[AnswerLogprob]) -> bool:
    """Multiple choice by likelihood: the correct answer has the lowest per-token NLL."""
    return all(correct.mean_nll < item.mean_nll for item in wrong)


async def gather_limited(
    items: Sequence[T], worker: Callable[[T], Awaitable[R]], concurrency: int
) -> list[R]:
    """Run `worker` over `items` with at most `concurrency` in flight, keeping the order."""
    semaphore = asyncio.Semaphore(concurrency)

    async def run(item: T) -> R:
        async with semaphore:
            return await worker(item)

    return list(await asyncio.gather(*(run(item) for item in items)))


def ks_forget_quality(unlearned: Sequence[float], retain: Sequence[float]) -> float:
    """TOFU forget quality: the KS-test p-value between two truth-ratio distributions
    (high = indistinguishable from a model that never saw the forget set)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(list(unlearned), list(retain)).pvalue)
