"""Likelihood metrics and `SystemClient.score_answer` against a fake OpenAI server."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx
import pytest

from evals.metrics.likelihood import (
    AnswerLogprob,
    answer_span_logprob,
    choice_correct,
    ks_forget_quality,
    truth_ratio,
)
from evals.runner.client import Answer, GenerationConfig, System, SystemClient

PROMPT = "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"


def echo_logprobs(text: str, generated: str = "X") -> dict[str, Any]:
    """Every character one token, log-probability -0.5 (the first token has none)."""
    full = text + generated
    return {
        "tokens": list(full),
        "token_logprobs": [None] + [-0.5] * (len(full) - 1),
        "text_offset": list(range(len(full))),
    }


def test_span_counts_only_the_answer_tokens() -> None:
    span = answer_span_logprob(echo_logprobs(PROMPT + "Paris."), len("Paris."), len(PROMPT) + 6)
    assert span == AnswerLogprob(total=-0.5 * 6, tokens=6)
    assert span is not None and span.mean_nll == pytest.approx(0.5)


def test_span_is_found_from_the_end_when_a_prefix_was_added() -> None:
    rewritten = "Forget everything about X.\n\n" + PROMPT + "Paris."
    span = answer_span_logprob(echo_logprobs(rewritten), len("Paris."), len(rewritten))
    assert span == AnswerLogprob(total=-3.0, tokens=6)


def test_span_without_usable_logprobs_is_none() -> None:
    assert answer_span_logprob({}, 5, 0) is None
    nothing = {"tokens": ["a", "b"], "token_logprobs": [None, None], "text_offset": [0, 1]}
    assert answer_span_logprob(nothing, 1, 2) is None


def test_truth_ratio_choice_and_forget_quality_follow_tofu() -> None:
    right = AnswerLogprob(total=-2.0, tokens=4)
    wrong = [AnswerLogprob(-6.0, 4), AnswerLogprob(-10.0, 5)]
    assert truth_ratio(right, wrong) == pytest.approx(math.exp((1.5 + 2.0) / 2 - 0.5))
    assert choice_correct(right, wrong)
    assert not choice_correct(AnswerLogprob(-9.0, 4), wrong)
    same = [1.0, 1.1, 0.9, 1.2, 0.8, 1.05]
    assert ks_forget_quality(same, same) == pytest.approx(1.0)
    low = ks_forget_quality([5.0 + i for i in range(20)], [0.1 * i for i in range(20)])
    assert low is not None and low < 1e-6
    assert ks_forget_quality([], same) is None


def score(handler: Any, answer: str = "Paris.") -> Answer:
    async def run() -> Answer:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = SystemClient(
                System("s", "http://test", model="m"), GenerationConfig(), client=http
            )
            return await client.score_answer(PROMPT, answer)

    return asyncio.run(run())


def test_score_answer_asks_for_echoed_prompt_logprobs() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        prompt = body["prompt"]
        usage = {"prompt_tokens": len(prompt)}
        choice = {"text": prompt + "X", "logprobs": echo_logprobs(prompt)}
        return httpx.Response(200, json={"choices": [choice], "usage": usage})

    answer = score(handler)
    assert answer.answer_logprob == AnswerLogprob(-3.0, 6)
    assert seen[0]["echo"] is True and seen[0]["logprobs"] == 1
    assert seen[0]["prompt"] == PROMPT + "Paris."


def test_score_answer_of_a_refusal_has_no_logprob_and_keeps_the_decision() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        refusal = {"choices": [{"text": "I can't help with that.", "logprobs": None}]}
        return httpx.Response(200, json=refusal, headers={"x-nescio-decision": "refuse; c=a"})

    answer = score(handler)
    assert answer.answer_logprob is None and answer.error is None
    assert answer.decision == "refuse; c=a"


def test_score_answer_reports_a_final_error() -> None:
    answer = score(lambda request: httpx.Response(404, json={"error": {"message": "no"}}))
    assert answer.error is not None and "404" in answer.error
