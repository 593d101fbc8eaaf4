"""Run the planned detection jobs: build each guard once, check every probe, record per item."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from evals.concept_sources import concept_ids_for
from evals.detection.plan import Job
from evals.probes import Probe, ProbeKind
from guards.chat import chat_texts
from guards.concepts import ConceptList
from guards.decision import Decision
from guards.encoder import Encoder
from guards.guard import DetectorKind, Guard
from guards.learned_detector import question_segments
from guards.memo_encoder import memoized
from guards.scorer import DEFAULT_SCORER, LogisticScorer

TextField = Literal["prompt", "query"]


@dataclass(frozen=True, slots=True)
class Timing:
    """Where the wall time went: encoding probes, building guards, checking."""

    encode_s: float
    build_s: float
    check_s: float
    checks: int
    texts_encoded: int


def probe_text(probe: Probe, field: TextField) -> str:
    return probe.prompt if field == "prompt" else probe.query


def run_jobs(
    concepts: ConceptList,
    jobs: Sequence[Job],
    encoder: Encoder,
    *,
    cache_dir: Path | None = None,
    text_field: TextField = "prompt",
    progress: bool = True,
    detector: DetectorKind = "embedding",
    scorer: LogisticScorer = DEFAULT_SCORER,
    multilingual: bool = True,
) -> tuple[list[dict[str, Any]], Timing]:
    """Per-item records (one per probe and job) and the timing breakdown.

    ``detector`` picks the first-generation alias + similarity detector (default, what
    :meth:`Guard.build` serves) or the learned one (:mod:`guards.learned_detector`) with ``scorer``;
    ``multilingual`` as in :meth:`Guard.build`.
    """
    memo = memoized(encoder, cache_dir)
    encoded_before = memo.encoded
    started = time.perf_counter()
    unique = {p.id: p for job in jobs for p in job.probes}
    memo.prefetch(
        (
            s.text
            for p in unique.values()
            if not p.messages
            for s in question_segments([probe_text(p, text_field)])
        ),
        progress=progress,
        desc="encoding probes",
    )
    encode_s = time.perf_counter() - started
    build_s = check_s = 0.0
    records: list[dict[str, Any]] = []
    total = sum(len(job.probes) for job in jobs)
    with tqdm(total=total, desc="checking probes", unit="probe", disable=not progress) as bar:
        for job in jobs:
            t0 = time.perf_counter()
            guard = Guard.build(
                concepts.subset(job.concept_ids),
                encoder=memo,
                cache_dir=cache_dir,
                detector=detector,
                scorer=scorer,
                multilingual=multilingual,
            )
            t1 = time.perf_counter()
            records.extend(_check_all(guard, job, text_field))
            t2 = time.perf_counter()
            build_s += t1 - t0
            check_s += t2 - t1
            bar.update(len(job.probes))
    memo.save()
    timing = Timing(encode_s, build_s, check_s, total, memo.encoded - encoded_before)
    return records, timing


def reference_answer(probe: Probe) -> str:
    """The probe's gold answer as a model that knows it would write it ("" when there is none)."""
    if probe.answer_index is not None and probe.choices:
        return probe.choices[probe.answer_index]
    return probe.answers[0] if probe.answers else ""


def _decide(guard: Guard, probe: Probe, text_field: TextField) -> tuple[list[str], Decision, bool]:
    """The texts the guard read, its decision, and whether the probe was answered in part.

    A chat probe goes through :meth:`Guard.screen`, the proxy's own path (system, assistant and
    user turns read as ``nescio serve`` reads them; a mixed prompt split). It counts as answered
    in part when its in-scope sentences were withheld and the rest forwarded (a mixed prompt, or
    a passing mention cut out), including the probe's ``metadata.benign`` part verbatim when it
    names one. Other probes are one user text.
    """
    if not probe.messages:
        text = probe_text(probe, text_field)
        return [text], guard.check([text]), False
    messages = [dict(m) for m in probe.messages]
    screening = guard.screen({"model": "probe", "messages": messages}, "chat")
    assert screening.decision is not None  # a guard with concepts always decides
    texts = list(chat_texts(messages).turns)
    cut = screening.partial is not None or "mentioned=" in screening.header
    if not cut or screening.body is None:
        return texts, screening.decision, False
    benign = probe.metadata.get("benign")
    sent = [str(m.get("content")) for m in screening.body["messages"] if m.get("role") == "user"]
    in_part = not isinstance(benign, str) or _folded(benign) in _folded(sent[-1])
    return texts, screening.decision, in_part


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _check_all(guard: Guard, job: Job, text_field: TextField) -> Iterator[dict[str, Any]]:
    """One record per probe: the input decision, plus the facts the summary needs.

    ``output_flagged``: the output guard (:class:`guards.output_guard.LeakScanner`) would withhold
    the probe's reference answer, a stand-in for a model that knows it. ``names_other``: the
    probe names (alias or full name) a guarded concept it is not labelled with, e.g. a neighbour
    question about a co-star who is a target too; ``names_own``: a probe that should pass (not a
    forget probe) names its own target, by alias, full name or bare surname ("Johnson starred in
    the HBO series ___" among Dwayne Johnson's neighbours). Flagging either is arguably right.
    """
    guard_label = job.concept_ids[0] if len(job.concept_ids) == 1 else "all"
    ids = [c.id for c in guard.concepts.concepts]
    for probe in job.probes:
        texts, decision, in_part = _decide(guard, probe, text_field)
        expected = [c for c in concept_ids_for(probe) if c in job.concept_ids]
        by_turn = guard.namer.names.mentions_by_text(texts)  # one name pass for both facts
        named = guard.namer.named(texts, by_turn)
        mentions = guard.namer.names.merged(by_turn)
        leak = guard.leak_scanner(texts, named).leaked(reference_answer(probe))
        yield {
            "setting": job.setting.value,
            "guard": guard_label,
            "probe_id": probe.id,
            "probe_set": probe.probe_set,
            "kind": probe.kind.value,
            "level": probe.level,
            "type": probe.type,
            "target_ids": list(probe.target_ids),
            "expected_concepts": expected,
            "action": decision.action,
            "concept_id": decision.concept_id if decision.in_scope else None,
            "nearest_concept": decision.concept_id,
            "score": round(decision.score, 4),
            "threshold": round(decision.threshold, 4),
            "evidence": sorted({e.kind for e in decision.evidence}),
            "flagged": decision.in_scope,
            "output_flagged": leak is not None,
            "answered_in_part": in_part,
            "names_other": any(
                hit and cid not in expected for cid, hit in zip(ids, named, strict=True)
            ),
            "names_own": probe.kind is not ProbeKind.FORGET
            and any(
                (hit or mention.bare) and cid in expected
                for cid, hit, mention in zip(ids, named, mentions, strict=True)
            ),
        }
