"""How much ``nescio expand`` adds to a concept list, measured against a live chat model.

    python benchmarks/expand_quality.py examples/concepts.yaml --base-url http://127.0.0.1:8001/v1
    python benchmarks/expand_quality.py evals/suites/user_concepts/dev/concepts.yaml \\
        --probes custom:evals/suites/user_concepts/dev/chats.jsonl --out .nescio/dev.expanded.yaml

Runs expand (the same prompts and screening) on every concept, then prints per concept how many
aliases, in-scope questions and namesake negatives the model proposed and how many survived
screening. With ``--probes`` (the custom probe JSONL, or any ``benchmark:split`` spec) it also
counts, by plain alias matching (:class:`guards.naming.ConceptNamer`, the decisive name pass of
both detectors), how many of the concept's in-scope chats (kind ``forget``, target the concept)
its names match before and after, and how many out-of-scope chats (every other kind, any
target) they match: the gain and the cost of the new aliases. What the new examples and
negatives do to the embedding detector is not measured here: write the list with ``--out`` and
run ``nescio eval detect`` on both lists.

``--answers FILE`` keeps every raw answer (JSONL, one per request) and replays the recorded ones:
the run is auditable, and screening changes can be measured again without the model (same
concepts and options, so the same requests).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evals.concept_sources.base import concept_ids_for
from evals.loaders import load_probes
from evals.probes import Probe, ProbeKind
from evals.settings import EvalSettings
from guards.chat import chat_texts
from guards.cli import write_concepts
from guards.concepts import ConceptList, load_concepts
from guards.expand import (
    ALIASES,
    NEGATIVES,
    QUESTIONS,
    ChatModel,
    Completion,
    Expansion,
    Settings,
    apply_expansions,
    expand_concepts,
)
from guards.expand_cli import OpenAIChat, drop_counts, review_markdown, summary
from guards.naming import ConceptNamer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("concepts", type=Path)
    parser.add_argument("--base-url", default="http://127.0.0.1:8001/v1")
    parser.add_argument("--model", help="default: the first model the server lists")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--max-new", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--concept", action="append", default=[], metavar="ID")
    parser.add_argument("--probes", action="append", default=[], metavar="SPEC")
    parser.add_argument("--data-dir", type=Path, default=EvalSettings().data_dir)
    parser.add_argument("--out", type=Path, help="also write the expanded list and its review")
    parser.add_argument(
        "--answers", type=Path, help="record raw answers here; replay recorded ones"
    )
    args = parser.parse_args()

    concepts = load_concepts(args.concepts)
    for path in (args.out, args.answers):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with OpenAIChat(
        args.base_url, api_key=os.environ.get(args.api_key_env) or None, timeout=args.timeout
    ) as chat:
        model = args.model or chat.models()[0]
        settings = Settings(model=model, max_tokens=args.max_tokens, limit=args.max_new)
        asked: ChatModel = RecordedChat(chat, args.answers) if args.answers else chat
        expansions = expand_concepts(
            concepts, asked, settings, only=args.concept, source=str(args.concepts), progress=True
        )
    elapsed = time.perf_counter() - started
    expanded = apply_expansions(concepts, expansions)
    print(summary(expansions))
    print(f"\n{model} at {args.base_url}: {len(expansions)} concepts in {elapsed:.0f} s")
    print_counts(expansions)
    if args.probes:
        probes = [p for spec in args.probes for p in load_probes(spec, data_dir=args.data_dir)]
        print_matches(concepts, expanded, [e.concept_id for e in expansions], probes)
    if args.out:
        write_concepts(expanded, args.out, args.concepts)
        Path(f"{args.out}.review.md").write_text(
            review_markdown(
                expansions, source=args.concepts, target=args.out, endpoint=chat.base_url
            ),
            encoding="utf-8",
        )
        print(f"wrote {args.out} and {args.out}.review.md")


class RecordedChat:
    """``chat``'s answers, each appended to ``path``; a request recorded there is not sent."""

    def __init__(self, chat: OpenAIChat, path: Path) -> None:
        self.endpoint = chat.endpoint
        self._chat = chat
        self._path = path
        self._known: dict[str, Completion] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                self._known[row["request"]] = Completion(
                    row["content"], row["model"], row["truncated"]
                )

    def complete(self, body: Mapping[str, Any]) -> Completion:
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if key not in self._known:
            answer = self._chat.complete(body)
            row = {"request": key, "content": answer.content, "model": answer.model}
            with self._path.open("a", encoding="utf-8") as file:
                file.write(json.dumps({**row, "truncated": answer.truncated}) + "\n")
            self._known[key] = answer
        return self._known[key]


def print_counts(expansions: Sequence[Expansion]) -> None:
    """Proposed / kept per task and concept, then the drop reasons over the whole run."""
    tasks = (ALIASES, QUESTIONS, NEGATIVES)
    print(f"\n{'concept':<26}" + "".join(f"{t.key + ' prop/kept':>22}" for t in tasks) + "  errors")
    for e in expansions:
        cells = "".join(f"{f'{e.of(t).proposed}/{len(e.of(t).added)}':>22}" for t in tasks)
        print(f"{e.concept_id:<26}{cells}  {len(e.errors)}")
    totals = "".join(
        f"{f'{sum(e.of(t).proposed for e in expansions)}/{sum(len(e.of(t).added) for e in expansions)}':>22}"
        for t in tasks
    )
    print(f"{'total':<26}{totals}  {sum(len(e.errors) for e in expansions)}")
    for task in tasks:
        reasons = drop_counts(d for e in expansions for d in e.of(task).dropped)
        print(f"dropped {task.key}: " + (", ".join(f"{n} {r}" for r, n in reasons.items()) or "-"))


Row = tuple[Probe, list[bool], list[bool]]  # a probe, named per concept before and after


def print_matches(
    before: ConceptList, after: ConceptList, concept_ids: Sequence[str], probes: Sequence[Probe]
) -> None:
    """Chats named by each concept's names, before and after expansion (alias matching only)."""
    order = {c.id: i for i, c in enumerate(before.concepts)}
    named_before, named_after = ConceptNamer(before), ConceptNamer(after)
    rows: list[Row] = []
    for probe in probes:
        turns = list(chat_texts(probe.messages).turns) if probe.messages else [probe.prompt]
        rows.append((probe, named_before.named(turns), named_after.named(turns)))
    outside = [r for r in rows if r[0].kind is not ProbeKind.FORGET]
    print(f"\n{'concept':<26}{'in-scope named':>22}{'out-of-scope named':>22}  before -> after / n")
    gained = 0
    for concept_id in concept_ids:
        inside = [
            r for r in rows if r[0].kind is ProbeKind.FORGET and concept_id in concept_ids_for(r[0])
        ]
        was, now = _changes(inside, order[concept_id])
        gained += now - was
        print(
            f"{concept_id:<26}{_cell(inside, order[concept_id]):>22}"
            f"{_cell(outside, order[concept_id]):>22}"
        )
    any_before = sum(any(r[1]) for r in outside)
    any_after = sum(any(r[2]) for r in outside)
    print(
        f"in-scope chats newly named by their concept: {gained}; out-of-scope chats named by "
        f"any concept: {any_before} -> {any_after} / {len(outside)}"
    )


def _changes(rows: Sequence[Row], concept: int) -> tuple[int, int]:
    return sum(r[1][concept] for r in rows), sum(r[2][concept] for r in rows)


def _cell(rows: Sequence[Row], concept: int) -> str:
    named_before, named_after = _changes(rows, concept)
    return f"{named_before} -> {named_after} / {len(rows)}"


if __name__ == "__main__":
    main()
