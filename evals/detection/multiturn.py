"""Does the guard keep multi-turn conversations in scope? Follow-ups, split questions, neighbours.

Usage: ``python -m evals.detection.multiturn [--targets 51-100] [--per-scenario 300]``

Builds the conversations of :mod:`evals.detection.conversations` from RWKU targets (by default
51-100, the targets the learned scorer was *not* fitted on), concepts built as ``nescio eval
detect --benchmark rwku`` builds them, and checks each chat with :class:`guards.guard.Guard`
(:meth:`guards.guard.Guard.check_messages`: the user turns, and the assistant turn as context,
exactly what the proxy checks). Settings:
``single`` (a guard holding only the conversation's target) and ``all`` (every target at once);
detectors: ``embedding`` and ``learned``. Prints, per cell, the share of conversations flagged
next to the share flagged when only the last user turn is checked (the naive guard), and in
``all`` how often a flagged in-scope chat was attributed to the right target. Encodings are
memoised in ``--cache-dir`` so reruns are cheap. Records keep probe ids, never probe text.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from evals.concept_sources import concept_ids_for, write_concepts
from evals.concept_sources.rwku import build
from evals.detection.conversations import (
    Conversation,
    Material,
    Scenario,
    build_conversations,
    pronouns_of,
)
from evals.detection.plan import Setting
from evals.jsonl import write_rows
from evals.loaders import load_probes, parse_targets
from evals.presets import CORPUS_DIR
from evals.probes import Probe
from guards.chat import RequestTexts, chat_texts
from guards.concepts import ConceptList
from guards.corpus import read_corpus_file
from guards.encoder import load_encoder
from guards.guard import DetectorKind, Guard
from guards.learned_detector import question_segments
from guards.memo_encoder import MemoEncoder, vector_store

Record = dict[str, Any]
DETECTORS: tuple[DetectorKind, ...] = ("embedding", "learned")


def load_material(data_dir: Path, targets: list[str], concepts: ConceptList) -> Material:
    """Probes grouped by concept id, and each target's pronouns from its intro and passages."""
    by_id = {c.id: c for c in concepts.concepts}
    pronouns = {}
    for concept in concepts.concepts:
        texts = [concept.description or ""]
        for path in concept.forget_corpus:
            texts += read_corpus_file(concepts.corpus_path(path))
        pronouns[concept.id] = pronouns_of(texts)

    def grouped(*specs: str) -> dict[str, list[Probe]]:
        groups: dict[str, list[Probe]] = defaultdict(list)
        for spec in specs:
            for probe in load_probes(spec, data_dir=data_dir, targets=targets):
                for cid in concept_ids_for(probe):
                    groups[cid].append(probe)
        return groups

    utility = load_probes("rwku:utility_factuality_triviaqa", data_dir=data_dir)
    return Material(
        concepts=by_id,
        pronouns=pronouns,
        forget=grouped("rwku:forget"),
        neighbor=grouped("rwku:neighbor"),
        utility=utility,
    )


def check_all(
    concepts: ConceptList,
    conversations: Sequence[Conversation],
    encoder: MemoEncoder,
    *,
    setting: Setting,
    detector: DetectorKind,
    cache_dir: Path | None,
) -> Iterator[Record]:
    """One record per conversation: flagged as a whole, and on its first and last user turn."""
    groups: dict[tuple[str, ...], list[Conversation]] = defaultdict(list)
    for conversation in conversations:
        key = (conversation.concept_id,) if setting is Setting.SINGLE else ()
        groups[key].append(conversation)
    for ids, members in groups.items():
        subset = concepts.subset(ids) if ids else concepts
        guard = Guard.build(subset, encoder=encoder, cache_dir=cache_dir, detector=detector)
        for conversation in members:
            questions = _texts(conversation).questions
            decision = guard.check_messages(conversation.messages)
            first, last = guard.check([questions[0]]), guard.check([questions[-1]])
            yield {
                "setting": setting.value,
                "detector": detector,
                "scenario": conversation.scenario.value,
                "concept": conversation.concept_id,
                "source_ids": list(conversation.source_ids),
                "template": conversation.template,
                "flagged": decision.in_scope,
                "flagged_concept": decision.concept_id if decision.in_scope else None,
                "evidence": sorted({e.kind for e in decision.evidence}),
                "score": round(decision.score, 4),
                "first_turn_flagged": first.in_scope,
                "last_turn_flagged": last.in_scope,
            }


def summarize(records: Sequence[Record]) -> list[Record]:
    """One row per detector, setting and scenario."""
    cells: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for record in records:
        cells[(record["detector"], record["setting"], record["scenario"])].append(record)
    rows = []
    for (detector, setting, scenario), rs in cells.items():
        flagged = [r for r in rs if r["flagged"]]
        expected = Scenario(scenario).in_scope
        rows.append(
            {
                "detector": detector,
                "setting": setting,
                "scenario": scenario,
                "metric": {True: "recall", False: "fpr", None: "flagged"}[expected],
                "n": len(rs),
                "rate": len(flagged) / len(rs),
                "first_turn_rate": sum(r["first_turn_flagged"] for r in rs) / len(rs),
                "last_turn_rate": sum(r["last_turn_flagged"] for r in rs) / len(rs),
                "alias_share": sum("alias" in r["evidence"] for r in flagged) / len(flagged)
                if flagged
                else None,
                "right_concept": sum(r["flagged_concept"] == r["concept"] for r in flagged)
                / len(flagged)
                if flagged and expected is not False
                else None,
            }
        )
    return rows


def format_table(rows: Sequence[Record]) -> str:
    head = (
        f"{'detector':<10} {'setting':<7} {'scenario':<19} {'n':>5} {'metric':>7} "
        f"{'conv':>7} {'first':>7} {'last':>7} {'alias':>7} {'right':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['detector']:<10} {r['setting']:<7} {r['scenario']:<19} {r['n']:>5} "
            f"{r['metric']:>7} {_pct(r['rate']):>7} {_pct(r['first_turn_rate']):>7} "
            f"{_pct(r['last_turn_rate']):>7} "
            f"{_pct(r['alias_share']):>7} {_pct(r['right_concept']):>7}"
        )
    lines.append(
        "conv: flagged checking the whole chat (user turns, as the proxy does); first / last: "
        "flagged checking only the first / last user turn; "
        "alias: share of flagged chats with alias evidence; right: flagged chats attributed to "
        "the conversation's target"
    )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _texts(conversation: Conversation) -> RequestTexts:
    return chat_texts(conversation.messages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="51-100", help="RWKU targets (default 51-100)")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--per-scenario", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detector", choices=(*DETECTORS, "both"), default="both")
    parser.add_argument("--setting", choices=("single", "all", "both"), default="both")
    parser.add_argument("--cache-dir", type=Path, default=Path(".nescio/index-cache"))
    parser.add_argument("--out", type=Path, help="folder for items.jsonl and summary.json")
    parser.add_argument(
        "--gold-answers",
        action="store_true",
        help="the assistant turn of neighbour and utility chats is the gold answer, not a "
        "neutral stand-in (the guard reads assistant turns as context)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    targets = parse_targets(args.targets)
    detectors = DETECTORS if args.detector == "both" else (args.detector,)
    settings = [Setting.SINGLE, Setting.ALL] if args.setting == "both" else [Setting(args.setting)]
    inner = load_encoder()
    encoder = MemoEncoder(inner, vector_store(args.cache_dir, inner))
    with tempfile.TemporaryDirectory() as folder:
        concepts = write_concepts(
            build(args.data_dir, targets, CORPUS_DIR), Path(folder) / "concepts.yaml"
        )
        material = load_material(args.data_dir, targets, concepts)
        conversations = build_conversations(
            material, args.per_scenario, args.seed, gold_answers=args.gold_answers
        )
        chats = [_texts(c) for c in conversations]
        encoder.prefetch(
            (
                s.text
                for t in chats
                for q, c in ((t.questions, t.context), (t.questions[-1:], ()))
                for s in question_segments(q, c)
            ),
            progress=True,
            desc="encoding conversations",
        )
        records = [
            record
            for detector in detectors
            for setting in settings
            for record in check_all(
                concepts,
                conversations,
                encoder,
                setting=setting,
                detector=detector,
                cache_dir=args.cache_dir,
            )
        ]
    encoder.save()
    rows = summarize(records)
    print(format_table(rows))
    print(f"{len(conversations)} conversations, {time.perf_counter() - started:.0f} s")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_rows(args.out / "items.jsonl", records)
        summary = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
