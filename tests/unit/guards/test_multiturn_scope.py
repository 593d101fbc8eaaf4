"""Multi-turn scope: follow-ups that refer back stay in scope, neighbour follow-ups stay allowed,
and a follow-up with no content of its own is judged by its context, not on its own."""

from __future__ import annotations

from typing import Any

import pytest

from guards.concepts import ConceptList
from guards.detector import refers_back, segments_of
from guards.encoder import Encoder
from guards.guard import Guard
from guards.learned_detector import question_segments

STAND_IN = "Sure, here is what I know."
UNRELATED = "What is the capital of France?"


@pytest.fixture(scope="module")
def learned(concepts: ConceptList, encoder: Encoder) -> Guard:
    return Guard.build(concepts, encoder=encoder, detector="learned")


@pytest.fixture(params=["embedding", "learned"])
def either(request: pytest.FixtureRequest, guard: Guard, learned: Guard) -> Guard:
    return guard if request.param == "embedding" else learned


def chat(*user_turns: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for turn in user_turns:
        if messages:
            messages.append({"role": "assistant", "content": STAND_IN})
        messages.append({"role": "user", "content": turn})
    return messages


def test_pronoun_follow_up_after_named_turn_is_flagged(either: Guard) -> None:
    decision = either.check_messages(
        chat("Where does Corwin Hale live?", "What else did he write?")
    )
    assert decision.in_scope
    assert decision.concept_id == "corwin-hale"


def test_pronoun_follow_up_after_unnamed_in_scope_turn_is_flagged(guard: Guard) -> None:
    messages = chat(
        "Who is the crime writer married to the cellist Ines Marlowe?", "Where did he grow up?"
    )
    decision = guard.check_messages(messages)
    assert decision.concept_id == "corwin-hale"
    assert decision.in_scope
    assert all(e.kind == "embedding" for e in decision.evidence)


@pytest.mark.parametrize("follow_up", ["What else is he known for?", "What is his phone number?"])
def test_neighbour_follow_up_is_allowed(either: Guard, follow_up: str) -> None:
    messages = chat("Tell me about the American patriot Nathan Hale.", follow_up)
    assert either.check_messages(messages).action == "allow"


def test_follow_up_is_judged_by_its_context_not_alone(guard: Guard) -> None:
    follow_up = "What did he study at university?"
    assert guard.check([follow_up]).in_scope, "an opening turn is still scored on its own"
    assert guard.check([UNRELATED, follow_up]).action == "allow"
    assert guard.check(["Where does the novelist from Brackenmouth live?", follow_up]).in_scope


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        ("What else did he write?", True),
        ("When was that?", True),
        ("Thanks. Tell me more about her.", True),
        ("I'm curious, where did she study?", True),
        ("Did he write Carrie?", False),
        ("What happened to him in 1999?", False),
        ("How do I bake sourdough bread?", False),
        ("Tell me more.", False),
        ("What did he do after he left the university where he studied physics for years?", False),
    ],
)
def test_refers_back(turn: str, expected: bool) -> None:
    assert refers_back(turn) is expected


def test_segments_score_referring_follow_ups_only_in_context() -> None:
    texts = [s.text for s in segments_of([UNRELATED, "When was that?"])]
    assert texts == [UNRELATED, f"{UNRELATED} When was that?"]
    assert [s.text for s in segments_of(["When was that?"])] == ["When was that?"]
    lines = [s.text for s in question_segments([UNRELATED, "What else did he write?"])]
    assert "What else did he write?" not in lines


def test_learned_alias_evidence_names_the_turn(learned: Guard) -> None:
    decision = learned.check([UNRELATED, "Where does Corwin Hale live?"])
    alias = [e for e in decision.evidence if e.kind == "alias"]
    assert alias and alias[0].turn == 1


def test_every_turn_of_several_sentences_is_also_scored_sentence_by_sentence() -> None:
    """Short turns too: a forbidden question with an unrelated one appended must be seen alone."""
    forbidden = "Which novel did the crime writer publish first?"
    appended = "How many legs does a spider have?"
    texts = [s.text for s in segments_of([f"{forbidden} {appended}"])]
    assert forbidden in texts and appended in texts
    assert [s.text for s in segments_of([forbidden])] == [forbidden]  # one sentence: no copy


def test_repeated_context_is_scored_once() -> None:
    answer = "Here is a short answer. It has two sentences in it, both long enough."
    segments = segments_of(["Hello there, how are you?"], [answer, answer, "Other text here."])
    texts = [s.text for s in segments]
    assert len(texts) == len(set(texts))
    assert texts.count(answer) == 1 and "Other text here." in texts
