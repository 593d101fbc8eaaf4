"""The one probe model every benchmark loads into.

A probe is a prompt sent to a system under test plus what a correct answer looks like. ``kind``
says what the system should do with it: forget (``forget``), keep answering (``neighbor``,
``retain``, ``utility``), or nothing in particular (``holdout``, never trained on). ``prompt`` is
the exact user text to send (the benchmark's own instruction wording around ``query``); ``query``
is the bare question, kept for analysis. A chat probe (``messages``: a whole conversation, with
system and assistant turns) is sent as those messages; its ``prompt`` is the last user message.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class ProbeKind(StrEnum):
    FORGET = "forget"
    NEIGHBOR = "neighbor"
    RETAIN = "retain"
    UTILITY = "utility"
    HOLDOUT = "holdout"

    @property
    def should_forget(self) -> bool:
        return self is ProbeKind.FORGET


class ProbeFormat(StrEnum):
    """How the answer is graded: free text (``qa``/``cloze``), a letter (``mc``), or unscored."""

    QA = "qa"
    CLOZE = "cloze"
    MC = "mc"
    INSTRUCTION = "instruction"


class Probe(BaseModel):
    """One evaluation item. ``id`` is stable across runs (set name + line), so runs can resume."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    probe_set: str
    kind: ProbeKind
    format: ProbeFormat = ProbeFormat.QA
    level: int | None = None
    type: str | None = None
    target_ids: tuple[str, ...] = ()
    subject: str | None = None
    query: str
    prompt: str
    answers: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    answer_index: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    messages: tuple[dict[str, str], ...] = ()

    @model_validator(mode="after")
    def _mc_consistent(self) -> Probe:
        if self.format is ProbeFormat.MC:
            if not 2 <= len(self.choices) <= len(LETTERS):
                raise ValueError(f"multiple choice needs 2-{len(LETTERS)} choices")
            if self.answer_index is None or not 0 <= self.answer_index < len(self.choices):
                raise ValueError("answer_index must point into choices")
        return self

    @property
    def target_id(self) -> str | None:
        """The one target a forget/neighbour probe is about (utility probes may have several)."""
        return self.target_ids[0] if len(self.target_ids) == 1 else None

    @property
    def answer_letter(self) -> str | None:
        return None if self.answer_index is None else LETTERS[self.answer_index]


def mc_prompt(question: str, choices: tuple[str, ...] | list[str]) -> str:
    """The zero-shot multiple-choice wording used for every MC set (lm-eval's MMLU style)."""
    lines = [question.strip(), ""]
    lines += [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices)]
    lines += ["", "Answer with the letter of the correct option.", "Answer:"]
    return "\n".join(lines)


def first_per_set(probes: list[Probe], kind: ProbeKind, limit: int) -> list[Probe]:
    """Every probe, except that only the first ``limit`` of each ``kind`` set are kept."""
    seen: dict[str, int] = {}
    kept = []
    for probe in probes:
        if probe.kind is kind:
            seen[probe.probe_set] = seen.get(probe.probe_set, 0) + 1
            if seen[probe.probe_set] > limit:
                continue
        kept.append(probe)
    return kept


def stable_hash(key: str) -> int:
    """A 64-bit hash of ``key`` that is the same on every machine and run (no seed): what the
    hash splits of probes (calibration part, cross-fit folds) are drawn from."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
