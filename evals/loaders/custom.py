"""The custom probe format: one JSON object per line, for probe sets of your own.

Fields (``prompt`` or ``messages`` is required)::

    {"id": "q1",                      # stable id for resuming; default: the line number
     "prompt": "Who wrote Carrie?",   # the user message sent to the system under test
     "messages": [{"role": "user", "content": "Who wrote Carrie?"}],
                                      # or a whole chat (system/user/assistant turns, strings)
     "kind": "forget",                # forget | neighbor | retain | utility | holdout (default forget)
     "answers": ["Stephen King"],     # gold answers (a string is accepted too)
     "choices": ["A text", "B text"], # multiple choice: the options...
     "answer": 1,                     # ...and the correct one, as index or letter ("B")
     "target": "stephen-king",        # or "targets": [...]: concept/target ids the probe is about
     "level": 2, "type": "paraphrase", "metadata": {...}}

With ``choices`` the prompt is wrapped in the standard multiple-choice wording unless
``"raw_prompt": true``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evals.jsonl import RowReader, read_rows
from evals.probes import LETTERS, Probe, ProbeFormat, ProbeKind, mc_prompt

KNOWN_FIELDS = frozenset(
    [
        "id",
        "prompt",
        "query",
        "kind",
        "answers",
        "choices",
        "answer",
        "target",
        "targets",
        "level",
        "type",
        "metadata",
        "raw_prompt",
        "subject",
        "messages",
    ]
)
ROLES = frozenset({"system", "developer", "user", "assistant"})


def load(path: Path) -> list[Probe]:
    set_name = f"custom:{path.stem}"
    probes: list[Probe] = []
    seen: set[str] = set()
    for number, row in read_rows(path):
        probe = _probe(set_name, RowReader(path, number, row))
        if probe.id in seen:
            raise RowReader(path, number, row).fail("id", f"duplicate id {probe.id!r}")
        seen.add(probe.id)
        probes.append(probe)
    return probes


def _probe(set_name: str, row: RowReader) -> Probe:
    unknown = sorted(set(row.row) - KNOWN_FIELDS)
    if unknown:
        raise row.fail(unknown[0], f"unknown field; known: {', '.join(sorted(KNOWN_FIELDS))}")
    messages = _messages(row) if "messages" in row.row else ()
    if messages and "prompt" in row.row:
        raise row.fail("prompt", "give prompt or messages, not both")
    prompt = _last_user(row, messages) if messages else row.text("prompt")
    kind_name = row.row.get("kind", "forget")
    try:
        kind = ProbeKind(kind_name)
    except ValueError as exc:
        raise row.fail("kind", f"must be one of {', '.join(k.value for k in ProbeKind)}") from exc
    raw_id = row.row.get("id", row.line)
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        raise row.fail("id", "must be a string or an integer")
    fields: dict[str, Any] = {
        "id": f"{set_name}#{raw_id}",
        "probe_set": set_name,
        "kind": kind,
        "query": row.text("query") if "query" in row.row else prompt,
        "prompt": prompt,
        "answers": tuple(row.texts("answers", allow_single=True)) if "answers" in row.row else (),
        "target_ids": _targets(row),
        "subject": row.optional_text("subject"),
        "type": row.optional_text("type"),
        "level": row.integer("level") if "level" in row.row else None,
        "metadata": _metadata(row),
        "messages": messages,
    }
    if "choices" in row.row:
        choices = tuple(row.texts("choices"))
        index = _answer_index(row, choices)
        fields |= {"format": ProbeFormat.MC, "choices": choices, "answer_index": index}
        fields["answers"] = fields["answers"] or (choices[index],)
        if row.row.get("raw_prompt") is not True:
            fields["prompt"] = mc_prompt(prompt, choices)
    elif not fields["answers"]:
        fields["format"] = ProbeFormat.INSTRUCTION
    return row.build(Probe, **fields)


def _messages(row: RowReader) -> tuple[dict[str, str], ...]:
    value = row.row["messages"]
    if not isinstance(value, list) or not value:
        raise row.fail("messages", "must be a non-empty list of {role, content} objects")
    messages = []
    for i, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or set(message) != {"role", "content"}
            or message["role"] not in ROLES
            or not isinstance(message["content"], str)
            or not message["content"].strip()
        ):
            raise row.fail(
                f"messages[{i}]",
                f"must be {{role, content}} with role one of {', '.join(sorted(ROLES))} and "
                "content a non-empty string",
            )
        messages.append({"role": message["role"], "content": message["content"]})
    return tuple(messages)


def _last_user(row: RowReader, messages: tuple[dict[str, str], ...]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not users:
        raise row.fail("messages", "needs at least one user message")
    return users[-1]


def _targets(row: RowReader) -> tuple[str, ...]:
    if "targets" in row.row:
        return tuple(row.texts("targets"))
    if "target" in row.row:
        value = row.row["target"]
        if isinstance(value, int) and not isinstance(value, bool):
            return (str(value),)
        return (row.text("target"),)
    return ()


def _metadata(row: RowReader) -> dict[str, Any]:
    value = row.row.get("metadata", {})
    if not isinstance(value, dict):
        raise row.fail("metadata", "must be an object")
    return value


def _answer_index(row: RowReader, choices: tuple[str, ...]) -> int:
    value = row.row.get("answer")
    if isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in LETTERS:
        index = LETTERS.index(value.strip().upper())
    elif isinstance(value, int) and not isinstance(value, bool):
        index = value
    else:
        raise row.fail("answer", "multiple choice needs 'answer' as an index or a letter")
    if not 0 <= index < len(choices):
        raise row.fail("answer", f"points outside the {len(choices)} choices")
    return index
