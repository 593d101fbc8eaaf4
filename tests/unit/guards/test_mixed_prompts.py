"""Mixed prompts: the in-scope sentences of the last user message are withheld, the rest kept,
and every case that cannot be split cleanly falls back to the whole policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from guards.chat import chat_texts
from guards.corpus import split_sentences
from guards.decision import Decision
from guards.guard import Guard, chat_turns
from guards.interventions import WITHHELD_NOTE
from guards.mixed import Partial, asks, clause_spans, isolate, part_spans
from guards.screen import Screening

FORBIDDEN = "Where does Corwin Hale live these days?"
ALLOWED = "What is the capital of France?"
MIXED = f"{FORBIDDEN} {ALLOWED}"


def split(guard: Guard, decide: Callable[[str], Decision], text: str) -> Partial | None:
    return isolate(guard.detector, [text], 0, decide(text))


@pytest.fixture(scope="module")
def mixed(guard: Guard, decide: Callable[[str], Decision]) -> Partial:
    partial = split(guard, decide, MIXED)
    assert partial is not None
    return partial


def test_part_spans_are_the_corpus_sentences_located_in_the_text() -> None:
    text = "Please answer briefly, thank you.\nQuestion: Who is he?  Where was the author born?"
    spans = part_spans(text)
    # "Who is he?" is shorter than the corpus splitter's minimum, so it stays with its neighbour.
    assert [text[s:e] for s, e in spans] == [
        "Please answer briefly, thank you.",
        "Question: Who is he?  Where was the author born?",
    ]


def test_only_the_in_scope_sentence_is_withheld(mixed: Partial) -> None:
    assert mixed.decision.concept_id == "corwin-hale"
    assert mixed.withheld == (FORBIDDEN,)
    assert mixed.kept == ALLOWED
    assert mixed.header_value().startswith("icul; concept=corwin-hale;")
    assert mixed.header_value().endswith("; partial=1")
    assert FORBIDDEN not in mixed.header_value()


def test_the_rest_of_a_templated_prompt_keeps_its_layout(
    guard: Guard, decide: Callable[[str], Decision]
) -> None:
    text = f"Please briefly answer the following question.\n{ALLOWED}\n{FORBIDDEN}\nAnswer:"
    partial = split(guard, decide, text)
    assert partial is not None and partial.withheld == (f"{FORBIDDEN}\nAnswer:",)
    assert partial.kept == f"Please briefly answer the following question.\n{ALLOWED}"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(FORBIDDEN, id="one-sentence"),
        pytest.param(f"{FORBIDDEN} Who is Corwin Hale married to?", id="every-part-in-scope"),
    ],
)
def test_messages_that_cannot_be_split_get_the_whole_policy(
    guard: Guard, decide: Callable[[str], Decision], text: str
) -> None:
    assert decide(text).in_scope
    assert split(guard, decide, text) is None


def test_an_out_of_scope_conversation_is_never_split(
    guard: Guard, decide: Callable[[str], Decision]
) -> None:
    text = f"{ALLOWED} How many legs does a spider have?"
    assert split(guard, decide, text) is None


def test_a_remainder_still_in_scope_through_earlier_turns_gets_the_whole_policy(
    guard: Guard,
) -> None:
    turns = ["Tell me about the novelist Corwin Hale.", f"{ALLOWED} Where does he live now?"]
    decision = guard.check(turns)
    assert decision.in_scope
    assert isolate(guard.detector, turns, 1, decision) is None


def chat(*messages: tuple[str, Any]) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": r, "content": c} for r, c in messages]}


def test_the_rewrite_cuts_the_last_user_message_and_adds_the_note(
    guard: Guard, mixed: Partial
) -> None:
    body = chat(("system", "Be brief."), ("user", "Hello there, how are you?"), ("user", MIXED))
    rewrite = guard.withhold(body, mixed)
    assert rewrite is not None
    messages = rewrite.body["messages"]
    assert messages[0] == {"role": "system", "content": f"{WITHHELD_NOTE}\n\nBe brief."}
    assert messages[1:] == [
        {"role": "user", "content": "Hello there, how are you?"},
        {"role": "user", "content": ALLOWED},
    ]
    assert body["messages"][2]["content"] == MIXED  # the client's body is left untouched


def test_multi_part_content_keeps_its_image(guard: Guard, mixed: Partial) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    content = [{"type": "text", "text": FORBIDDEN}, image, {"type": "text", "text": ALLOWED}]
    body = chat(("user", content))
    assert chat_turns(body["messages"]) == [MIXED]
    rewrite = guard.withhold(body, mixed)
    assert rewrite is not None
    assert rewrite.body["messages"][-1]["content"] == [{"type": "text", "text": ALLOWED}, image]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"model": "m", "prompt": MIXED}, id="completion-prompt"),
        pytest.param(chat(("user", MIXED), ("user", ALLOWED)), id="split-was-not-the-last"),
        pytest.param(
            chat(("user", FORBIDDEN), ("assistant", "Sorry?"), ("user", MIXED)),
            id="withheld-sentence-also-in-an-earlier-turn",
        ),
        pytest.param(
            chat(("assistant", f"You asked: {FORBIDDEN.lower()}"), ("user", MIXED)),
            id="withheld-sentence-quoted-by-the-assistant",
        ),
    ],
)
def test_no_rewrite_when_a_withheld_sentence_would_still_be_sent(
    guard: Guard, mixed: Partial, body: dict[str, Any]
) -> None:
    assert guard.withhold(body, mixed) is None


def test_last_user_turn_counts_guarded_turns_only() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "One?"},
        {"role": "assistant", "content": "Two."},
        {"role": "user", "content": "Three?"},
        {"role": "tool", "content": "Four."},
    ]
    assert chat_texts(messages).last_user == 2
    assert chat_texts(messages[:1]).last_user is None


def test_two_requests_joined_in_one_sentence_are_cut_at_the_clause(
    guard: Guard, decide: Callable[[str], Decision]
) -> None:
    text = "What is the capital of France, and where does Corwin Hale live these days?"
    assert [text[s:e] for s, e in clause_spans(text)] == [
        "What is the capital of France, and",
        "where does Corwin Hale live these days?",
    ]
    partial = split(guard, decide, text)
    assert partial is not None
    assert partial.withheld == ("where does Corwin Hale live these days?",)
    assert partial.kept == "What is the capital of France"


@pytest.mark.parametrize(
    "text",
    [
        "Salt and pepper are on the table.",  # "and" between nouns: no request follows
        "Who is he, and?",  # a fragment shorter than a clause stays attached
    ],
)
def test_sentences_without_a_second_request_stay_whole(text: str) -> None:
    assert len(clause_spans(text)) == 1


def _screen(guard: Guard, text: str) -> Screening:
    return guard.screen(chat(("user", text)))


def test_a_concept_mentioned_in_passing_is_cut_out_silently_and_the_request_answered(
    guard: Guard,
) -> None:
    text = "I read Harry Potter books as a kid. Can you recommend a good book about astronomy?"
    screening = _screen(guard, text)
    assert screening.decision is not None and not screening.decision.in_scope
    assert screening.header == "allow; mentioned=harry-potter"
    assert screening.body is not None and screening.refusal is None
    assert screening.body["messages"] == [
        {"role": "user", "content": "Can you recommend a good book about astronomy?"}
    ]  # no note about a withheld part: nothing was asked about it


@pytest.mark.parametrize(
    "text",
    [
        # the kept request refers back to the mention
        "I read the Harry Potter books as a kid. Tell me again how it ends, in detail.",
        # the in-scope sentence asks (a question, a role for the model)
        "Who killed Dumbledore in Harry Potter? Also, recommend a good book about astronomy.",
        "You are Hermione Granger at Hogwarts. Recommend me a good book about astronomy.",
    ],
)
def test_a_concept_asked_about_is_never_a_passing_mention(guard: Guard, text: str) -> None:
    screening = _screen(guard, text)
    assert screening.decision is not None and screening.decision.in_scope


@pytest.mark.parametrize(
    ("text", "asking"),
    [
        ("Where does he live?", True),
        ("Tomas Brandt is a jazz pianist born in ___.", True),  # a cloze asks to fill it in
        ("Last question: do you know anything about the chip", True),
        ("I want to know how the book ends.", True),
        ("You are Samwise, sitting by the fire.", True),
        ("I binged the series last winter and now I want to visit Belfast.", False),
        ("My cat is named after a wizard.", False),
    ],
)
def test_asks_tells_requests_from_statements(text: str, asking: bool) -> None:
    assert asks(text) is asking


def test_titles_and_initials_do_not_end_a_sentence() -> None:
    text = "Tell me how you and Mr. Frodo crossed into Mordor. J. R. R. Tolkien wrote it long ago."
    assert split_sentences(text) == [
        "Tell me how you and Mr. Frodo crossed into Mordor.",
        "J. R. R. Tolkien wrote it long ago.",
    ]
