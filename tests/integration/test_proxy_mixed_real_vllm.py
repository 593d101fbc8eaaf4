"""A mixed prompt through the proxy to a real vLLM CPU server: the allowed question is answered,
the forbidden one never reaches the model. Structure only, never the model's exact words."""

from __future__ import annotations

import httpx
import pytest

from guards.interventions import WITHHELD_NOTE

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
TIMEOUT = httpx.Timeout(120.0, connect=5.0)
ALLOWED = "How many legs does a spider have?"


def test_a_mixed_prompt_is_answered_without_its_forbidden_part(
    prompts: dict[str, str], proxy_server: str, vllm_server: str
) -> None:
    mixed = f"Which Hogwarts house is the bravest? {ALLOWED}"
    body = {"model": MODEL, "max_tokens": 12, "temperature": 0.0}
    response = httpx.post(
        f"{proxy_server}/v1/chat/completions",
        json={**body, "messages": [{"role": "user", "content": mixed}]},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    decision = response.headers["x-nescio-decision"]
    assert decision.startswith(f"refuse; concept={prompts['concept_id']};")
    assert decision.endswith("; partial=1")
    answer = response.json()
    assert answer["choices"][0]["message"]["content"].strip() not in ("", prompts["refusal"])
    # The model read exactly the note and the allowed question: same prompt length as sending
    # those two messages straight to vLLM.
    direct = httpx.post(
        f"{vllm_server}/v1/chat/completions",
        json={
            **body,
            "max_tokens": 1,
            "messages": [
                {"role": "system", "content": WITHHELD_NOTE},
                {"role": "user", "content": ALLOWED},
            ],
        },
        timeout=TIMEOUT,
    )
    assert answer["usage"]["prompt_tokens"] == direct.json()["usage"]["prompt_tokens"]
