"""RWKU (Jin et al., 2024): forget probes (levels 1-3), neighbour probes (1-2), utility sets.

Prompts follow the RWKU evaluation code: "Please complete the blank ..." for cloze probes,
"Please briefly answer ..." for questions, no "Answer:" cue after affirmative-suffix probes and
no "Question:" label before in-context-learning probes (their query carries its own).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from evals.jsonl import Row, RowReader
from evals.loaders.source import RowSource
from evals.probes import Probe, ProbeFormat, ProbeKind, mc_prompt

CLOZE = "Please complete the blank in the following question.\nQuestion: {}\nAnswer:"
QUESTION = "Please briefly answer the following question.\nQuestion: {}\nAnswer:"
SUFFIX = "Please briefly answer the following question.\nQuestion: {}"
IN_CONTEXT = "Please briefly answer the following question.\n{}\nAnswer:"
BBH = "Answer the following question.\nQuestion: {}\nAnswer:"
_LANGUAGE = re.compile(r"^cross[- ]lingual\s*\((\w+)\)$", re.IGNORECASE)

FORGET_SPLITS = ("forget_level1", "forget_level2", "forget_level3")
NEIGHBOR_SPLITS = ("neighbor_level1", "neighbor_level2")
UTILITY_SPLITS = (
    "utility_general_mmlu",
    "utility_reason_bbh",
    "utility_factuality_triviaqa",
    "utility_truthfulness_truthfulqa",
    "utility_fluency",
)
GROUPS = {"forget": FORGET_SPLITS, "neighbor": NEIGHBOR_SPLITS, "utility": UTILITY_SPLITS}


@dataclass(frozen=True, slots=True)
class Target:
    """One person to forget: id, name and the one-line introduction RWKU gives."""

    target_id: str
    name: str
    intro: str


def load(split: str, source: RowSource) -> list[Probe]:
    label, rows = source.rows(f"rwku/{split}.jsonl", None)
    name = f"rwku:{split}"
    if split in FORGET_SPLITS or split in NEIGHBOR_SPLITS:
        kind = ProbeKind.FORGET if split.startswith("forget") else ProbeKind.NEIGHBOR
        return [_knowledge_probe(name, kind, RowReader(label, n, row)) for n, row in rows]
    return [_utility_probe(name, split, RowReader(label, n, row)) for n, row in rows]


def _knowledge_probe(set_name: str, kind: ProbeKind, row: RowReader) -> Probe:
    query = row.text("query")
    level = row.integer("level")
    raw_type = row.text("type").strip()
    metadata: dict[str, str] = {}
    language = _LANGUAGE.match(raw_type)
    probe_type = raw_type.lower()
    if language:
        probe_type, metadata["language"] = "cross lingual", language.group(1).lower()
    if kind is ProbeKind.NEIGHBOR:
        metadata["neighbor"] = row.text("neighbor")
    if level == 1:
        template = CLOZE
    elif probe_type == "affirmative suffix":
        template = SUFFIX
    elif probe_type == "incontext learning":
        template = IN_CONTEXT
    else:
        template = QUESTION
    return row.build(
        Probe,
        id=f"{set_name}#{row.line}",
        probe_set=set_name,
        kind=kind,
        format=ProbeFormat.CLOZE if level == 1 else ProbeFormat.QA,
        level=level,
        type=probe_type,
        target_ids=(str(row.integer("target_id")),),
        subject=row.text("subject"),
        query=query,
        prompt=template.format(query),
        answers=(row.text("answer"),),
        metadata=metadata,
    )


def _utility_probe(set_name: str, split: str, row: RowReader) -> Probe:
    targets = tuple(str(t) for t in row.integers("target_ids"))
    common = {"id": f"{set_name}#{row.line}", "probe_set": set_name, "kind": ProbeKind.UTILITY}
    task = row.row.get("task")
    metadata = {"task": task} if isinstance(task, str) else {}
    if split == "utility_general_mmlu":
        question, choices = row.text("question"), tuple(row.texts("choices"))
        return row.build(
            Probe,
            **common, format=ProbeFormat.MC, type="mmlu", target_ids=targets, query=question,
            prompt=mc_prompt(question, choices), choices=choices,
            answer_index=_index(row, "answer", len(choices)), metadata=metadata,
        )  # fmt: skip
    if split == "utility_truthfulness_truthfulqa":
        question = row.text("question")
        choices, answer = _mc1(row)
        return row.build(
            Probe,
            **common, format=ProbeFormat.MC, type="truthfulqa", target_ids=targets,
            query=question, prompt=mc_prompt(question, choices), choices=choices,
            answer_index=answer,
        )  # fmt: skip
    if split == "utility_fluency":
        instruction = row.text("instruction")
        return row.build(
            Probe,
            **common, format=ProbeFormat.INSTRUCTION, type="fluency", target_ids=targets,
            query=instruction, prompt=instruction,
        )  # fmt: skip
    question = row.text("question")
    is_bbh = split == "utility_reason_bbh"
    answers = (row.text("answer"),) if is_bbh else tuple(row.texts("answers"))
    return row.build(
        Probe,
        **common, format=ProbeFormat.QA, type="bbh" if is_bbh else "triviaqa",
        target_ids=targets, query=question,
        prompt=(BBH if is_bbh else QUESTION).format(question), answers=answers, metadata=metadata,
    )  # fmt: skip


def _index(row: RowReader, field: str, n_choices: int) -> int:
    value = row.integer(field)
    if not 0 <= value < n_choices:
        raise row.fail(field, f"answer index {value} is outside the {n_choices} choices")
    return value


def _mc1(row: RowReader) -> tuple[tuple[str, ...], int]:
    block = row.row.get("mc1_targets")
    if not isinstance(block, dict):
        raise row.fail("mc1_targets", "missing or not an object")
    inner = RowReader(row.source, row.line, block)
    choices = tuple(inner.texts("choices"))
    labels = inner.integers("labels")
    if len(labels) != len(choices) or labels.count(1) != 1:
        raise row.fail("mc1_targets.labels", "needs one label per choice, exactly one 1")
    return choices, labels.index(1)


def load_targets(source: RowSource) -> list[Target]:
    """The RWKU targets; ``intro`` is unwrapped from its JSON string and the request dropped."""
    label, rows = source.local("rwku/targets.jsonl")
    return [_target(RowReader(label, n, row)) for n, row in rows]


def _target(row: RowReader) -> Target:
    name = row.text("target")
    intro = row.text("intro")
    try:
        inner = json.loads(intro)
    except json.JSONDecodeError:
        inner = intro
    if isinstance(inner, dict):
        inner = inner.get("intro", "")
    if not isinstance(inner, str):
        raise row.fail("intro", "must be a string or a JSON object with an 'intro' string")
    intro_text = re.sub(rf"^Please forget {re.escape(name)}\.\s*", "", inner.strip())
    return Target(str(row.integer("target_id")), name, intro_text)


def passages(source: RowSource) -> Iterator[tuple[str, Row]]:
    """``(target_id, row)`` for each forget-corpus passage."""
    label, rows = source.local("rwku/passages.jsonl")
    for number, row in rows:
        reader = RowReader(label, number, row)
        reader.text("text")
        yield str(reader.integer("target_id")), row
