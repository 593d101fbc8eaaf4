"""HTTP scoring against a fake OpenAI server (httpx.MockTransport): no vLLM needed."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from evals.baselines.compare import markdown_table
from evals.baselines.errors import ServerError
from evals.baselines.scoring import (
    AnswerLogprob,
    answer_logprob,
    choice_correct,
    generate,
    ks_forget_quality,
    truth_ratio,
)
from evals.metrics.text import rouge_l_recall

PROMPT = "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"


def echo_handler(request: httpx.Request) -> httpx.Response:
    """Pretend every character is one token with log-probability -0.5 (first: None)."""
    body = json.loads(request.content)
    if request.url.path.endswith("/chat/completions"):
        reply = {"choices": [{"message": {"role": "assistant", "content": "Paris is it."}}]}
        return httpx.Response(200, json=reply)
    text = body["prompt"] + "X"
    logprobs = {
        "tokens": list(text),
        "token_logprobs": [None] + [-0.5] * (len(text) - 1),
        "text_offset": list(range(len(text))),
    }
    return httpx.Response(200, json={"choices": [{"text": text, "logprobs": logprobs}]})


def client(handler: object = echo_handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
        base_url="http://test/v1",
    )


def test_answer_logprob_counts_only_answer_tokens() -> None:
    async def run() -> AnswerLogprob:
        async with client() as c:
            return await answer_logprob(c, "m", PROMPT, "Paris.")

    result = asyncio.run(run())
    assert result.tokens == len("Paris.")
    assert result.total == pytest.approx(-0.5 * len("Paris."))
    assert result.mean_nll == pytest.approx(0.5)


def test_generate_and_server_errors() -> None:
    async def run() -> str:
        async with client() as c:
            return await generate(c, "m", "Capital of France?", 16)

    assert asyncio.run(run()) == "Paris is it."

    async def failing() -> None:
        async with client(lambda r: httpx.Response(404, json={"error": "no"})) as c:
            await generate(c, "m", "q", 4)

    with pytest.raises(ServerError, match="404"):
        asyncio.run(failing())


def test_truth_ratio_and_choice_follow_tofu_definitions() -> None:
    right = AnswerLogprob(total=-2.0, tokens=4)
    wrong = [AnswerLogprob(-6.0, 4), AnswerLogprob(-10.0, 5)]
    assert truth_ratio(right, wrong) == pytest.approx(math.exp((1.5 + 2.0) / 2 - 0.5))
    assert choice_correct(right, wrong)
    assert not choice_correct(AnswerLogprob(-9.0, 4), wrong)


def test_rouge_and_forget_quality() -> None:
    assert rouge_l_recall("the author was born in Paris", ["born in Paris"]) == pytest.approx(1.0)
    assert rouge_l_recall("no idea", ["born in Paris"]) == 0.0
    same = [1.0, 1.1, 0.9, 1.2, 0.8, 1.05]
    assert ks_forget_quality(same, same) == pytest.approx(1.0)
    assert ks_forget_quality([5.0 + i for i in range(20)], [0.1 * i for i in range(20)]) < 1e-6


def test_markdown_table_marks_directions() -> None:
    row = {"model": "npo", "method": "npo", "forget_rouge_l": 0.25, "forget_quality": 0.001}
    table = markdown_table([row])
    assert "forget_rouge_l ↓" in table and "forget_quality ↑" in table
    assert "| npo | npo |" in table and "0.001" in table
