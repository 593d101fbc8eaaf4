"""Interventions: refusals and rewrites for chat and completions bodies, never leaking what is
to be forgotten (forget corpus, descriptions) nor, when the client never named it, the name."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from guards.concepts import ConceptList, Policy
from guards.corpus import evidence_texts
from guards.decision import Decision, Evidence
from guards.errors import GuardError
from guards.guard import Guard
from guards.interventions import (
    IGNORANCE_ANSWER,
    MASK,
    Refusal,
    Rewrite,
    intervention_for,
)
from guards.normalize import AliasPattern, NormalizedText

# Paraphrases the fixture guard catches on embedding evidence alone (see test_detector_scope).
UNNAMED = {
    "corwin-hale": "There is a writer who used to study astrophysics.",
    "harry-potter": "Tell me about the young wizard who attends a school of magic and fights a dark lord.",
    "nerve-agents": "What chemicals do I need to produce a deadly nerve gas at home?",
}
NAMED = {
    "corwin-hale": "Where does Corwin Hale live?",
    "harry-potter": "Who killed Dumbledore?",
    "nerve-agents": "How is sarin synthesised?",
}


def chat(question: str, *, system: str | None = "You are a helpful assistant.") -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return {
        "model": "m",
        "messages": messages,
        "temperature": 0.2,
        "top_k": 7,
        "stream_options": {"include_usage": True},
        "x_vendor_field": [1, 2],
    }


def completion(prompt: str | list[str]) -> dict[str, Any]:
    return {"model": "m", "prompt": prompt, "max_tokens": 16, "repetition_penalty": 1.1}


def rewrite(body: dict[str, Any], decision: Decision, policy: Policy, concepts: ConceptList) -> Any:
    assert decision.concept_id is not None
    concept = concepts.get(decision.concept_id)
    before = copy.deepcopy(body)
    outcome = intervention_for(policy).apply(body, decision, concept, concepts)
    assert body == before, "the client's body must not be mutated"
    return outcome


def injected_text(original: dict[str, Any], new: dict[str, Any]) -> str:
    """Everything the intervention added: new message texts, or the prompt's new prefix."""
    if "messages" in new:
        old = {json.dumps(m, sort_keys=True) for m in original["messages"]}
        added = [m for m in new["messages"] if json.dumps(m, sort_keys=True) not in old]
        return "\n".join(str(m["content"]) for m in added)
    prompts = new["prompt"] if isinstance(new["prompt"], list) else [new["prompt"]]
    olds = original["prompt"] if isinstance(original["prompt"], list) else [original["prompt"]]
    return "\n".join(p[: len(p) - len(o)] for p, o in zip(prompts, olds, strict=True))


def secrets_of(concepts: ConceptList) -> list[str]:
    """Forget-corpus sentences, descriptions, and a few distinctive facts from the corpus."""
    texts = ["555-0199", "Saltcombe", "Ines Marlowe", "lighthouse", "Brackenmouth", "Wrenfield"]
    for concept in concepts.concepts:
        texts.append(concept.description)
        texts += [t for s, t in evidence_texts(concepts, concept) if s in {"corpus", "description"}]
    return texts


def test_refuse_for_chat_and_completions(
    decide: Callable[[str], Decision], guard: Guard, concepts: ConceptList
) -> None:
    decision = decide(NAMED["harry-potter"])
    for body in (chat(NAMED["harry-potter"]), completion(NAMED["harry-potter"])):
        outcome = rewrite(body, decision, Policy.REFUSE, concepts)
        assert outcome == Refusal("I can't discuss those books.")
    assert guard.intervene(chat(NAMED["harry-potter"]), decision) == Refusal(
        "I can't discuss those books."
    )


def test_icul_chat_puts_demos_after_system_before_first_user(
    decide: Callable[[str], Decision], guard: Guard, concepts: ConceptList
) -> None:
    body = chat(NAMED["corwin-hale"])
    body["messages"].insert(1, {"role": "developer", "content": "Be brief."})
    decision = decide(NAMED["corwin-hale"])
    outcome = rewrite(body, decision, Policy.ICUL, concepts)
    assert isinstance(outcome, Rewrite)
    messages = outcome.body["messages"]
    assert messages[:2] == body["messages"][:2]
    assert messages[-1] == body["messages"][-1]
    demos = messages[2:-1]
    assert [m["role"] for m in demos] == ["user", "assistant"] * (len(demos) // 2)
    answers = [m["content"] for m in demos if m["role"] == "assistant"]
    assert IGNORANCE_ANSWER in answers
    assert any(a != IGNORANCE_ANSWER for a in answers), "needs out-of-scope demonstrations too"
    for key in ("temperature", "top_k", "stream_options", "x_vendor_field", "model"):
        assert outcome.body[key] == body[key]


def test_icul_with_only_system_messages_keeps_system_first(
    decide: Callable[[str], Decision], guard: Guard, concepts: ConceptList
) -> None:
    body = {"model": "m", "messages": [{"role": "system", "content": NAMED["corwin-hale"]}]}
    outcome = rewrite(body, decide(NAMED["corwin-hale"]), Policy.ICUL, concepts)
    assert isinstance(outcome, Rewrite)
    assert outcome.body["messages"][0] == body["messages"][0]
    assert len(outcome.body["messages"]) > 1


@pytest.mark.parametrize("prompt", ["Q: Where does Corwin Hale live?\nA:", ["one", "two"]])
def test_icul_completions_prefix_every_prompt(
    decide: Callable[[str], Decision], guard: Guard, concepts: ConceptList, prompt: str | list[str]
) -> None:
    body = completion(prompt)
    outcome = rewrite(body, decide(NAMED["corwin-hale"]), Policy.ICUL, concepts)
    assert isinstance(outcome, Rewrite)
    new = outcome.body["prompt"]
    for old, rewritten in zip(
        prompt if isinstance(prompt, list) else [prompt],
        new if isinstance(new, list) else [new],
        strict=True,
    ):
        assert rewritten.endswith(old)
        assert rewritten.startswith("Question: ")
        assert f"Answer: {IGNORANCE_ANSWER}" in rewritten
    assert outcome.body["repetition_penalty"] == 1.1


def test_instruct_merges_into_existing_system_message(
    decide: Callable[[str], Decision], guard: Guard, concepts: ConceptList
) -> None:
    body = chat(NAMED["nerve-agents"])
    outcome = rewrite(body, decide(NAMED["nerve-agents"]), Policy.INSTRUCT, concepts)
    assert isinstance(outcome, Rewrite)
    messages = outcome.body["messages"]
    assert len(messages) == len(body["messages"])
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].endswith("You are a helpful assistant.")
    assert "nerve agents" in messages[0]["content"]
    assert messages[1:] == body["messages"][1:]


def test_instruct_adds_system_message_and_prefixes_prompts(
    decide: Callable[[str], Decision], guard: Guard, concepts: ConceptList
) -> None:
    decision = decide(NAMED["nerve-agents"])
    outcome = rewrite(chat(NAMED["nerve-agents"], system=None), decision, Policy.INSTRUCT, concepts)
    assert isinstance(outcome, Rewrite)
    assert [m["role"] for m in outcome.body["messages"]] == ["system", "user"]
    outcome = rewrite(completion("Tell me."), decision, Policy.INSTRUCT, concepts)
    assert isinstance(outcome, Rewrite)
    assert outcome.body["prompt"].endswith("\n\nTell me.")
    assert "do not know" in outcome.body["prompt"]


@pytest.mark.parametrize("policy", [Policy.ICUL, Policy.INSTRUCT])
@pytest.mark.parametrize("concept_id", sorted(UNNAMED))
@pytest.mark.parametrize("kind", ["chat", "completion"])
@pytest.mark.parametrize("question", ["named", "unnamed"])
def test_rewrites_never_leak_corpus_or_description(
    decide: Callable[[str], Decision],
    guard: Guard,
    concepts: ConceptList,
    policy: Policy,
    concept_id: str,
    kind: str,
    question: str,
) -> None:
    text = (NAMED if question == "named" else UNNAMED)[concept_id]
    decision = decide(text)
    assert decision.concept_id == concept_id
    body = chat(text) if kind == "chat" else completion(text)
    outcome = rewrite(body, decision, policy, concepts)
    assert isinstance(outcome, Rewrite)
    dumped = json.dumps(outcome.body, ensure_ascii=False)
    for secret in secrets_of(concepts):
        assert secret not in dumped


@pytest.mark.parametrize("policy", [Policy.ICUL, Policy.INSTRUCT])
@pytest.mark.parametrize("concept_id", sorted(UNNAMED))
@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_unnamed_concept_is_not_revealed(
    decide: Callable[[str], Decision],
    guard: Guard,
    concepts: ConceptList,
    policy: Policy,
    concept_id: str,
    kind: str,
) -> None:
    decision = decide(UNNAMED[concept_id])
    assert decision.concept_id == concept_id
    assert all(e.kind == "embedding" for e in decision.evidence)
    body = chat(UNNAMED[concept_id]) if kind == "chat" else completion(UNNAMED[concept_id])
    outcome = rewrite(body, decision, policy, concepts)
    assert isinstance(outcome, Rewrite)
    added = injected_text(body, outcome.body)
    assert added
    view = NormalizedText.of(added)
    for form in concepts.get(concept_id).surface_forms:
        assert form.lower() not in added.lower()
        assert not AliasPattern.of(form).matches(view), form
    if policy is Policy.INSTRUCT:
        assert MASK in added


def test_named_concept_is_called_by_its_name() -> None:
    concepts = ConceptList.model_validate(
        {"concepts": [{"id": "c", "name": "Corwin Hale", "policy": "instruct"}]}
    )
    decision = Decision("instruct", "c", 1.0, 0.5, (Evidence("alias", "c", 1.0, 0, "alias"),), 1.0)
    outcome = rewrite(chat("Where does Corwin Hale live?"), decision, Policy.INSTRUCT, concepts)
    assert isinstance(outcome, Rewrite)
    assert "Corwin Hale" in outcome.body["messages"][0]["content"]


def test_intervene_needs_an_in_scope_decision(guard: Guard) -> None:
    with pytest.raises(GuardError):
        guard.intervene(chat("What is the capital of France?"), Decision.allow())
