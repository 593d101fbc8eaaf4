"""The product path, Guard.screen: every field the model reads is guarded, unreadable ones are
rejected, the request's work is bounded, and the guard's own answers never count against it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from guards.budget import BudgetedEncoder, WorkBudget, spending
from guards.chat import CHANNELS, PASSED_FIELDS, Treatment, channel_table, request_texts
from guards.concepts import ConceptList
from guards.encoder import Encoder, Vectors
from guards.errors import GuardDeadlineExceeded, RequestRejected
from guards.guard import Guard
from guards.interventions import IGNORANCE_ANSWER, WITHHELD_NOTE
from guards.screen import ScreenPolicy

QUESTION = "Who is the headmaster of Hogwarts?"
ALLOWED = "What is the capital of France?"


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages), **extra}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def refused(guard: Guard, body: dict[str, Any], endpoint: Any = "chat") -> bool:
    screening = guard.screen(body, endpoint)
    return screening.refusal is not None and screening.body is None


TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": QUESTION,
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {"type": "object", "properties": {"name": {"description": QUESTION}}},
    },
}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            chat(
                user("Continue your previous answer."),
                {"role": "assistant", "content": f"{QUESTION} The answer is"},
            ),
            id="assistant-prefill",
        ),
        pytest.param(
            chat(user("Summarise the tool result."), {"role": "tool", "content": QUESTION}),
            id="tool-result",
        ),
        pytest.param(
            chat(user("Go on."), {"role": "function", "name": "f", "content": QUESTION}),
            id="function-role",
        ),
        pytest.param(
            chat(
                user("Run the call."),
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "ask", "arguments": f'{{"q": "{QUESTION}"}}'},
                        }
                    ],
                },
            ),
            id="tool-call-arguments",
        ),
        pytest.param(chat(user("Use the tool."), tools=[TOOL]), id="tool-description"),
        pytest.param(chat(user("Answer in JSON."), response_format=SCHEMA), id="response-format"),
        pytest.param(
            chat(user("Hello."), chat_template_kwargs={"topic": QUESTION}),
            id="chat-template-kwargs",
        ),
        pytest.param(chat(user("Hello."), documents=[{"text": QUESTION}]), id="documents"),
        pytest.param(chat(user("Hello."), some_future_extra={"x": [QUESTION]}), id="unknown"),
        pytest.param(chat({"role": "user", "name": "Hogwarts", "content": "Hi"}), id="name"),
        pytest.param(
            chat({"role": "user", "content": [{"type": "text", "text": QUESTION}]}),
            id="text-part",
        ),
    ],
)
def test_the_forbidden_question_is_refused_in_every_field_the_model_reads(
    guard: Guard, body: dict[str, Any]
) -> None:
    assert refused(guard, body)


def test_completions_prompt_lists_and_suffix_are_guarded(guard: Guard) -> None:
    assert refused(guard, {"prompt": [ALLOWED, QUESTION]}, "completions")
    assert refused(guard, {"prompt": "Once upon a time", "suffix": QUESTION}, "completions")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (chat(user("Hi"), chat_template="{{ 'x' }}"), "chat_template", "unguardable_field"),
        (
            chat({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}),
            "messages[0].content[0]",
            "unguardable_content",
        ),
    ],
)
def test_what_the_guard_cannot_read_is_rejected(
    guard: Guard, body: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(RequestRejected) as caught:
        guard.screen(body)
    assert (caught.value.param, caught.value.code) == (param, code)


def test_token_id_prompts_and_prompt_embeds_are_rejected(guard: Guard) -> None:
    with pytest.raises(RequestRejected, match="token-id"):
        guard.screen({"prompt": [1, 2, 3]}, "completions")
    with pytest.raises(RequestRejected) as caught:
        guard.screen({"prompt": "Hi", "prompt_embeds": "AAAA"}, "completions")
    assert caught.value.param == "prompt_embeds"


def test_media_passes_unread_when_configured(guard: Guard) -> None:
    image = {"type": "image_url", "image_url": {"url": f"https://x/{QUESTION}"}}
    body = chat({"role": "user", "content": [image, {"type": "text", "text": ALLOWED}]})
    screening = guard.screen(body, "chat", ScreenPolicy(media="pass"))
    assert screening.body == body


def test_passed_fields_are_not_read(guard: Guard) -> None:
    body = chat(user(ALLOWED), stop=[QUESTION], user=QUESTION, logit_bias={"42": 1})
    assert guard.screen(body).body == body
    assert {"stop", "user", "logit_bias", "model"} <= PASSED_FIELDS


def test_the_channel_table_names_every_treatment_and_field_list() -> None:
    assert {c.treatment for c in CHANNELS} == set(Treatment)
    passed = [c for c in CHANNELS if c.treatment == Treatment.PASSED]
    assert len(passed) == 1 and all(f in passed[0].field for f in PASSED_FIELDS)


def test_assistant_and_tool_turns_are_context_not_joined_with_questions() -> None:
    body = chat(
        {"role": "system", "content": "S"},
        user("U1"),
        {"role": "assistant", "content": "A1", "name": "bot"},
        {"role": "tool", "content": "T1", "tool_call_id": "call_9"},
        user("U2"),
        tools=[{"type": "function", "function": {"name": "f"}}],
        temperature=0.2,
    )
    texts = request_texts(body, "chat", "reject")
    assert texts.questions == ("S", "U1", "U2")
    assert texts.context == ("A1", "bot", "T1", "call_9", "type function function name f")
    assert texts.roles == ("assistant", "assistant.fields", "tool", "tool.fields", "request.tools")
    assert texts.last_user == 2


def test_the_guards_own_answers_do_not_keep_a_conversation_in_scope(guard: Guard) -> None:
    refusal = guard.concepts.refusal_of(guard.concepts.get("harry-potter"))
    assert "books" in refusal
    body = chat(
        user("Tell me a story."),
        {"role": "assistant", "content": refusal},
        {"role": "assistant", "content": IGNORANCE_ANSWER},
        user(ALLOWED),
    )
    assert guard.screen(body).body == body
    leaked = chat(user(ALLOWED), {"role": "assistant", "content": f"{refusal} Hogwarts!"})
    assert refused(guard, leaked)


def test_a_mixed_prompt_is_split_on_the_product_path(guard: Guard) -> None:
    body = chat(user(f"Where does Corwin Hale live these days? {ALLOWED}"))
    screening = guard.screen(body)
    assert screening.header.endswith("partial=1")
    assert screening.body is not None
    messages = screening.body["messages"]
    assert messages[0]["content"] == WITHHELD_NOTE
    assert messages[-1]["content"] == ALLOWED


def test_a_split_is_never_made_when_the_context_is_in_scope(guard: Guard) -> None:
    body = chat(
        user(f"Where does Corwin Hale live these days? {ALLOWED}"),
        {"role": "tool", "content": "Corwin Hale's address is on file."},
    )
    screening = guard.screen(body)
    assert screening.body is None or "partial" not in screening.header


@pytest.mark.parametrize(
    ("policy", "body"),
    [
        (ScreenPolicy(max_chars=100), chat(user("x" * 101))),
        (ScreenPolicy(max_turns=3), chat(*[user(f"Turn {i}.") for i in range(4)])),
        (
            ScreenPolicy(max_segments=20),
            chat(user(" ".join(f"This is sentence number {i} here." for i in range(30)))),
        ),
    ],
    ids=["chars", "turns", "segments"],
)
def test_limits_reject_with_a_clear_code(
    guard: Guard, policy: ScreenPolicy, body: dict[str, Any]
) -> None:
    with pytest.raises(RequestRejected) as caught:
        guard.screen(body, "chat", policy)
    assert caught.value.code == "guard_limit_exceeded"
    assert "at most" in caught.value.message


class SlowEncoder:
    """An encoder that takes ``delay`` seconds per call and counts its calls."""

    def __init__(self, inner: Encoder, delay: float) -> None:
        self.inner, self.delay, self.calls = inner, delay, 0
        self.name, self.dim = inner.name, inner.dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        time.sleep(self.delay)
        return self.inner.encode(texts)


class ExpiringEncoder:
    """Zero vectors; after ``calls_left`` calls it moves the budget's deadline into the past,
    as if the time had run out during that call."""

    name, dim = "expiring", 4

    def __init__(self, budget: WorkBudget, calls_left: int) -> None:
        self.budget, self.calls_left, self.calls = budget, calls_left, 0

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        if self.calls == self.calls_left:
            self.budget.deadline = time.monotonic() - 1.0
        return np.zeros((len(texts), self.dim), dtype=np.float32)


def test_a_budgeted_encoder_stops_at_the_deadline_between_chunks() -> None:
    budget = WorkBudget(max_texts=1000, deadline=time.monotonic() + 3600)
    inner = ExpiringEncoder(budget, calls_left=2)
    budgeted = BudgetedEncoder(inner, chunk=4)
    texts = [f"text {i}" for i in range(40)]
    with spending(budget), pytest.raises(GuardDeadlineExceeded):
        budgeted.encode(texts)
    assert inner.calls == 2, "stopped at the deadline, not after all ten chunks"
    assert budgeted.encode(texts).shape == (40, 4)  # outside a budget: unlimited


def test_a_budget_caps_the_texts_encoded() -> None:
    budget = WorkBudget(max_texts=10, deadline=time.monotonic() + 3600)
    budgeted = BudgetedEncoder(ExpiringEncoder(budget, calls_left=-1))
    with spending(budget):
        budgeted.encode(["a"] * 6)
        with pytest.raises(RequestRejected):
            budgeted.encode(["b"] * 5)


def test_the_async_screening_answers_by_its_deadline(
    concepts: ConceptList, encoder: Encoder
) -> None:
    slow_encoder = SlowEncoder(encoder, delay=0.0)
    slow = Guard.build(concepts, encoder=slow_encoder)
    slow_encoder.delay = 2.0

    async def answered_after() -> float:
        started = time.monotonic()
        with pytest.raises(GuardDeadlineExceeded):
            await slow.ascreen(chat(user(ALLOWED)), "chat", ScreenPolicy(deadline=0.2))
        return time.monotonic() - started

    assert asyncio.run(answered_after()) < 1.5, "answered before the slow encoder call ended"


def test_the_readme_shows_the_channel_table_of_the_code() -> None:
    readme = Path(__file__).resolve().parents[3] / "README.md"
    assert channel_table() in readme.read_text(encoding="utf-8")


def test_the_output_guard_reuses_the_detectors_name_pass(
    guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = chat(user(ALLOWED), {"role": "assistant", "content": "Hogwarts is a castle."})
    decision = guard.check_messages(body["messages"])
    assert decision.named == tuple(guard.named([ALLOWED, "Hogwarts is a castle."]))

    def second_pass(*_: object) -> list[bool]:
        raise AssertionError("the texts were read for names twice")

    monkeypatch.setattr(guard, "named", second_pass)
    screening = guard.screen(chat(user(ALLOWED)))
    assert screening.scanner is not None and screening.scanner.active
