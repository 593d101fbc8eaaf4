"""Interventions: what happens to a request that falls inside a concept's scope.

- ``refuse``: answer with the concept's refusal text instead of calling the model.
- ``icul``: in-context unlearning in the spirit of Pawelczyk et al. (2023): before the client's
  turns, demonstration turns where in-scope questions are answered with ignorance and a few
  unrelated questions are answered normally, so the model imitates forgetting only in scope.
- ``instruct``: a guardrail system prompt telling the model to act as if it never learned the concept.

A mixed prompt (:mod:`guards.mixed`) gets :func:`withhold_parts` instead: its in-scope sentences
are cut from the last user message and a note asks the model to answer the rest.

Injected text is built only from the concept's name, aliases and example questions, never from
its description or forget corpus, so a "repeat everything above" attack cannot leak the facts.
When the conversation never named the concept (e.g. a reverse query whose answer *is* the name),
the name and aliases are masked too.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from guards.chat import message_text
from guards.concepts import Concept, ConceptList, Policy
from guards.decision import Decision
from guards.mixed import Partial

IGNORANCE_ANSWER = "I'm sorry, I don't know anything about that."
MASK = "this subject"
MAX_IN_SCOPE_DEMOS = 3
# Unrelated questions answered normally, so demonstrations do not teach blanket ignorance.
OUT_OF_SCOPE_DEMOS: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many days are there in a leap year?", "A leap year has 366 days."),
    ("What is the chemical symbol for water?", "The chemical formula of water is H2O."),
)
# Names no concept and quotes nothing withheld: safe to send whatever was removed.
WITHHELD_NOTE = (
    "Part of the user's last message was removed because it asks about a topic you cannot "
    "discuss. Answer the rest of the message normally, and say briefly that you cannot answer "
    "the removed part."
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Answer the client with ``text``; the upstream model is not called."""

    text: str


@dataclass(frozen=True, slots=True)
class Rewrite:
    """Send ``body`` upstream instead of the client's request body."""

    body: dict[str, Any]


Outcome = Refusal | Rewrite


class Intervention(Protocol):
    """Turns an in-scope decision into an outcome. Never mutates ``body``."""

    def apply(
        self, body: Mapping[str, Any], decision: Decision, concept: Concept, concepts: ConceptList
    ) -> Outcome: ...


class Refuse:
    def apply(
        self, body: Mapping[str, Any], decision: Decision, concept: Concept, concepts: ConceptList
    ) -> Outcome:
        return Refusal(concepts.refusal_of(concept))


class InContextUnlearning:
    def apply(
        self, body: Mapping[str, Any], decision: Decision, concept: Concept, concepts: ConceptList
    ) -> Outcome:
        named = _was_named(decision)
        questions = [_mask(q, concept, named) for q in concept.examples[:MAX_IN_SCOPE_DEMOS]]
        if not questions:
            questions = [f"What do you know about {_label(concept, named)}?"]
        pairs = _interleave(questions, OUT_OF_SCOPE_DEMOS)
        new = copy.deepcopy(dict(body))
        if "messages" in new:
            demos: list[dict[str, Any]] = []
            for question, answer in pairs:
                demos += [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer},
                ]
            messages = list(new["messages"])
            at = next(
                (i for i, m in enumerate(messages) if _role(m) not in {"system", "developer"}),
                len(messages),
            )
            new["messages"] = messages[:at] + demos + messages[at:]
        else:
            shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in pairs)
            new["prompt"] = _prefix_prompt(new.get("prompt"), shots)
        return Rewrite(new)


class Instruct:
    def apply(
        self, body: Mapping[str, Any], decision: Decision, concept: Concept, concepts: ConceptList
    ) -> Outcome:
        label = _label(concept, _was_named(decision))
        instruction = (
            f"You have never learned anything about {label}. If asked about {label}, say that you "
            "do not know, without guessing, hinting or naming related facts. Answer every other "
            "part of the request normally."
        )
        return Rewrite(_with_instruction(body, instruction))


INTERVENTIONS: dict[Policy, Intervention] = {
    Policy.REFUSE: Refuse(),
    Policy.ICUL: InContextUnlearning(),
    Policy.INSTRUCT: Instruct(),
}


def intervention_for(policy: Policy) -> Intervention:
    return INTERVENTIONS[policy]


def withhold_parts(body: Mapping[str, Any], partial: Partial, note: bool = True) -> Rewrite | None:
    """A chat ``body`` with the withheld parts of its last user message cut out and, with
    ``note``, :data:`WITHHELD_NOTE` added as a system instruction.

    ``None`` when the body is not a chat or its last user message's text is not
    ``partial.text`` (the split was made on another message): the caller then applies the whole
    policy. Completion prompts are never split: a prompt is a document the model continues, and
    cutting a sentence out of it leaves a continuation of the removed topic (a templated
    question's answer, a dangling "Answer:"). Multi-part content keeps its non-text parts; its
    text parts become one part with the rest.
    """
    messages = list(body.get("messages") or [])
    users = [i for i, m in enumerate(messages) if _role(m) == "user"]
    if not users or message_text(messages[users[-1]]) != partial.text:
        return None
    message = dict(messages[users[-1]])
    content = message.get("content")
    if isinstance(content, list):
        others = [p for p in content if not (isinstance(p, Mapping) and "text" in p)]
        message["content"] = [{"type": "text", "text": partial.kept}, *others]
    else:
        message["content"] = partial.kept
    messages[users[-1]] = message
    new = dict(body)  # _with_instruction copies it deeply; nothing here mutates body
    new["messages"] = messages
    return Rewrite(_with_instruction(new, WITHHELD_NOTE) if note else copy.deepcopy(new))


def _with_instruction(body: Mapping[str, Any], instruction: str) -> dict[str, Any]:
    """A copy of ``body`` with ``instruction`` first in its system message (added if missing),
    or before its prompt(s)."""
    new = copy.deepcopy(dict(body))
    if "messages" in new:
        messages = list(new["messages"])
        if (
            messages
            and _role(messages[0]) == "system"
            and isinstance(messages[0].get("content"), str)
        ):
            first = dict(messages[0])
            first["content"] = f"{instruction}\n\n{first['content']}"
            messages[0] = first
        else:
            messages.insert(0, {"role": "system", "content": instruction})
        new["messages"] = messages
    else:
        new["prompt"] = _prefix_prompt(new.get("prompt"), f"{instruction}\n\n")
    return new


def _was_named(decision: Decision) -> bool:
    return any(e.kind == "alias" for e in decision.evidence)


def _label(concept: Concept, named: bool) -> str:
    return concept.name if named else MASK


def _mask(text: str, concept: Concept, named: bool) -> str:
    if named:
        return text
    for form in sorted(concept.surface_forms, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(form)}(?!\w)", MASK, text, flags=re.IGNORECASE)
    return text


def _interleave(
    in_scope: list[str], out_of_scope: tuple[tuple[str, str], ...]
) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for i, question in enumerate(in_scope):
        pairs.append((question, IGNORANCE_ANSWER))
        if i < len(out_of_scope):
            pairs.append(out_of_scope[i])
    return pairs


def _role(message: Any) -> str:
    return str(message.get("role", "")) if isinstance(message, Mapping) else ""


def _prefix_prompt(prompt: Any, prefix: str) -> Any:
    if isinstance(prompt, str):
        return prefix + prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return [prefix + p for p in prompt]
    return prompt
