"""Per-concept thresholds fitted on one part of the probes, reported on the other part only.

``nescio eval detect --calibrate-split F`` puts each probe, by a stable hash of its id, in the
calibration part (a share ``F``) or the report part. Every concept's guard checks the
calibration part alone (the ``single`` setting); its threshold becomes the lowest one that keeps
the false-positive rate on those out-of-scope probes within ``--target-fpr``
(:func:`guards.thresholds.choose_threshold`), or, with ``--fpr-budget list``, the thresholds are
chosen together so that the share of out-of-scope probes flagged by *any* concept stays within it
(:func:`guards.thresholds.list_thresholds`; a probe several guards checked, like an MMLU question
in the WMDP lists, is one probe of that budget). The evaluation then runs on the report part with
those thresholds, and precision/recall per concept are measured there. No reported number
comes from a probe that shaped a threshold.

Concepts with ``match: centroid`` also get a direction (:mod:`guards.direction`), whitened on
their out-of-scope probes of the calibration part, never on in-scope ones: the concept itself
stays its description and examples. Thresholds are then read off cross-fitted scores (each half
of that background scored by a direction fitted on the other half). Each such concept's
direction is fitted at every shrinkage of :data:`guards.direction.SHRINKAGES`, and the one
:func:`guards.direction.pick_shrinkage` keeps from those cross-fitted scores is the one stored
and whose scores set the threshold (with a list budget, read at ``target_fpr / K`` for ``K``
concepts, about each one's share).

A probe is flagged exactly when its concept's score reaches the concept's threshold, so
thresholds are fitted from the recorded scores of the detector under evaluation. With the
embedding detector every concept has one; the learned detector uses per-concept thresholds only
for ``match: centroid`` concepts (people share the scorer's probability threshold, fitted by
:mod:`evals.detection.fit_scorer` on other targets), so only those are fitted for it.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.detection.plan import Setting, plan
from evals.detection.run import TextField, probe_text, run_jobs
from evals.probes import Probe, stable_hash
from guards.concepts import Calibration, Concept, ConceptList
from guards.direction import MIN_BACKGROUND, SHRINKAGES, fit_direction, pick_shrinkage
from guards.encoder import Encoder
from guards.guard import DetectorKind
from guards.memo_encoder import MemoEncoder, memoized
from guards.scorer import DEFAULT_SCORER, LogisticScorer
from guards.thresholds import FprBudget, choose_threshold, list_thresholds

Record = dict[str, Any]
CALIBRATED_FILE = "concepts.calibrated.yaml"


@dataclass(frozen=True, slots=True)
class SplitCalibration:
    """The share of probes fitted on, and the false-positive budget: for each concept's guard
    alone (``"concept"``), or for the whole list guarding at once (``"list"``); with
    ``confidence``, the budget holds for the rate's upper confidence bound
    (:func:`guards.thresholds.allowed_false_positives`)."""

    fraction: float = 0.5
    target_fpr: float = 0.03
    budget: FprBudget = "concept"
    confidence: float | None = None


def in_calibration_part(probe_id: str, fraction: float) -> bool:
    """A stable, seed-free draw: the same id lands in the same part on every machine and run."""
    return stable_hash(probe_id) / 2**64 < fraction


def split_probes(probes: Sequence[Probe], fraction: float) -> tuple[list[Probe], list[Probe]]:
    """``(calibration part, report part)``."""
    calibration = [p for p in probes if in_calibration_part(p.id, fraction)]
    chosen = {p.id for p in calibration}
    return calibration, [p for p in probes if p.id not in chosen]


def fit_on_split(
    concepts: ConceptList,
    probes: Sequence[Probe],
    calibrate: SplitCalibration,
    encoder: Encoder,
    cache_dir: Path | None,
    text_field: TextField,
    progress: bool,
    detector: DetectorKind = "embedding",
    scorer: LogisticScorer = DEFAULT_SCORER,
) -> tuple[ConceptList, list[Probe], dict[str, Any]]:
    """Fit thresholds (and centroid concepts' directions) on the calibration part, single
    setting, with ``detector`` (and, for the learned one, ``scorer``).

    Returns the concepts with those thresholds and directions, the report part of the probes,
    and what was fitted (for the summary).
    """
    fit_part, report_part = split_probes(probes, calibrate.fraction)
    encoder = memoized(encoder, cache_dir)  # one vector store for the fitter and every run
    fitter = _DirectionFitter(concepts, fit_part, encoder, text_field)

    def single(
        listed: ConceptList, part: Sequence[Probe], guards: Container[str] | None = None
    ) -> list[Record]:
        """Single-setting records of ``part``, of every guard or of ``guards`` only."""
        jobs = plan(listed, part, [Setting.SINGLE])
        records, _ = run_jobs(
            listed,
            [j for j in jobs if guards is None or j.concept_ids[0] in guards],
            encoder,
            cache_dir=cache_dir,
            text_field=text_field,
            progress=progress,
            detector=detector,
            scorer=scorer,
        )
        return records

    def cross_fitted(shrinkage: float) -> list[Record]:
        """The directed concepts' records with directions of this shrinkage: in-scope probes
        scored by the direction whitened on all of the background, and each half of the
        background by one whitened on the other half only, so a threshold never rests on texts
        that shaped the direction."""
        directed = fitter.directed
        scored = single(fitter.concepts(None, shrinkage), fit_part, directed)
        records = [r for r in scored if r["kind"] == "forget"]
        for fold in (True, False):
            part = [p for p in fit_part if in_direction_fold(p.id) is fold]
            scored = single(fitter.concepts(not fold, shrinkage), part, directed)
            records += [r for r in scored if r["kind"] != "forget"]
        return records

    fitted_here = {  # with the learned detector, people keep the scorer's threshold
        c.id for c in concepts.concepts if detector != "learned" or c.match == "centroid"
    }
    undirected = fitted_here - fitter.directed
    records = single(concepts, fit_part, undirected) if undirected else []
    shrinkages: dict[str, float] = {}
    if fitter.directed:
        tried = {s: cross_fitted(s) for s in SHRINKAGES}
        rate = calibrate.target_fpr
        if calibrate.budget == "list":
            rate /= len(concepts.concepts)  # about each concept's share of a list budget
        shrinkages = {cid: pick_shrinkage(_scores(tried, cid), rate) for cid in fitter.directed}
        for shrinkage, scored in tried.items():
            records += [r for r in scored if shrinkages[r["guard"]] == shrinkage]
    fitted_concepts = fitter.concepts(None, shrinkages)
    thresholds = fit_thresholds(records, calibrate)
    fitted = {
        "split": f"hash split: fitted on {calibrate.fraction:.0%} of the probes, "
        "measured on the rest",
        "fraction": calibrate.fraction,
        "target_fpr": calibrate.target_fpr,
        "fpr_budget": calibrate.budget,
        "fpr_confidence": calibrate.confidence,
        "n_calibration_probes": len(fit_part),
        "thresholds": thresholds,
        "directions": {
            c.id: {"n_background": c.direction.n_background, "shrinkage": c.direction.shrinkage}
            for c in fitted_concepts.concepts
            if c.direction is not None
        },
    }
    return with_thresholds(fitted_concepts, thresholds), report_part, fitted


def in_direction_fold(probe_id: str) -> bool:
    """Which half of the calibration part's background a probe is in, for cross-fitting."""
    return in_calibration_part(f"{probe_id}#direction-fold", 0.5)


class _DirectionFitter:
    """Directions (:mod:`guards.direction`) for the centroid concepts, whitened on their
    single-setting guard's out-of-scope probes of the calibration part: all of them, or only
    those of one fold. A concept gets one only when each fold holds ``MIN_BACKGROUND`` distinct
    texts."""

    def __init__(
        self,
        concepts: ConceptList,
        fit_part: Sequence[Probe],
        encoder: MemoEncoder,
        text_field: TextField,
    ) -> None:
        self._concepts = concepts
        self._encoder = encoder
        self._background: dict[str, list[Probe]] = {}
        self._text_field = text_field
        for job in plan(concepts, fit_part, [Setting.SINGLE]):
            concept = concepts.get(job.concept_ids[0])
            background = [p for p in job.probes if not p.kind.should_forget]
            halves = [
                len({probe_text(p, text_field) for p in background if in_direction_fold(p.id) is f})
                for f in (True, False)
            ]
            if concept.match == "centroid" and min(halves) >= MIN_BACKGROUND:
                self._background[concept.id] = background
        self.directed = set(self._background)

    def concepts(self, fold: bool | None, shrinkage: float | Mapping[str, float]) -> ConceptList:
        """The list, each directed concept with a direction of ``shrinkage`` (one for all, or
        per concept id) whitened on all of its background (``fold=None``) or on one fold."""
        updated = []
        for concept in self._concepts.concepts:
            if concept.id in self.directed:
                value = shrinkage if isinstance(shrinkage, float) else shrinkage[concept.id]
                concept = self._directed(concept, fold, value)
            updated.append(concept)
        self._encoder.save()
        return self._concepts.model_copy(update={"concepts": updated})

    def _directed(self, concept: Concept, fold: bool | None, shrinkage: float) -> Concept:
        texts = [
            probe_text(p, self._text_field)
            for p in self._background[concept.id]
            if fold is None or in_direction_fold(p.id) is fold
        ]
        direction = fit_direction(self._encoder, concept, texts, shrinkage)
        return concept.model_copy(update={"direction": direction})


def _scores(
    tried: Mapping[float, Sequence[Record]], concept_id: str
) -> dict[float, tuple[list[float], list[float]]]:
    """Per shrinkage, one concept's in-scope and out-of-scope calibration scores."""
    scores: dict[float, tuple[list[float], list[float]]] = {}
    for shrinkage, records in tried.items():
        positive, negative = _by_guard(records)
        scores[shrinkage] = (positive[concept_id], list(negative[concept_id].values()))
    return scores


def _by_guard(
    records: Sequence[Record],
) -> tuple[dict[str, list[float]], dict[str, dict[str, float]]]:
    """Single-setting scores per guard: of its in-scope probes, and of its out-of-scope ones by
    probe id."""
    positive: dict[str, list[float]] = defaultdict(list)
    negative: dict[str, dict[str, float]] = defaultdict(dict)
    for record in records:
        if record["setting"] != "single":
            continue
        score = float(record["score"])
        if record["kind"] == "forget":
            positive[record["guard"]].append(score)
        else:
            negative[record["guard"]][record["probe_id"]] = score
    return positive, negative


def fit_thresholds(records: Sequence[Record], calibrate: SplitCalibration) -> dict[str, float]:
    """Per concept (single-setting records of the calibration part): its fitted threshold."""
    positive, negative = _by_guard(records)
    target, confidence = calibrate.target_fpr, calibrate.confidence
    if calibrate.budget == "list":
        return dict(sorted(list_thresholds(positive, negative, target, confidence).items()))
    return {
        concept: choose_threshold(positive[concept], list(scores.values()), target, confidence)
        for concept, scores in sorted(negative.items())
    }


def with_thresholds(concepts: ConceptList, thresholds: dict[str, float]) -> ConceptList:
    """A copy of ``concepts`` where each fitted concept has that explicit threshold."""
    updated = [
        c.model_copy(update={"threshold": thresholds[c.id]}) if c.id in thresholds else c
        for c in concepts.concepts
    ]
    return concepts.model_copy(update={"concepts": updated})


def calibrated_list(
    concepts: ConceptList,
    thresholds: dict[str, float],
    report_records: Sequence[Record],
    encoder: str,
    split: str,
    folder: Path,
) -> ConceptList:
    """``threshold: calibrated`` plus the fitted block, its precision/recall measured on the
    report part (single setting), ready to serve with ``nescio serve`` from a file in
    ``folder`` (forget-corpus paths are rewritten relative to it)."""
    fitted_at = datetime.now(UTC)
    updated = []
    for concept in concepts.concepts:
        corpus = [
            Path(os.path.relpath(concepts.corpus_path(p).resolve(), folder.resolve()))
            for p in concept.forget_corpus
        ]
        concept = concept.model_copy(update={"forget_corpus": corpus})
        if concept.id not in thresholds:
            updated.append(concept)
            continue
        mine = [r for r in report_records if r["setting"] == "single" and r["guard"] == concept.id]
        positives = [r for r in mine if r["kind"] == "forget"]
        flagged = [r for r in mine if r["flagged"]]
        hits = sum(1 for r in flagged if r["kind"] == "forget")
        calibration = Calibration(
            threshold=thresholds[concept.id],
            encoder=encoder,
            precision=hits / len(flagged) if flagged else 0.0,
            recall=hits / len(positives) if positives else 0.0,
            n_positive=len(positives),
            n_negative=len(mine) - len(positives),
            split=split,
            fitted_at=fitted_at,
        )
        updated.append(
            concept.model_copy(update={"threshold": "calibrated", "calibration": calibration})
        )
    return concepts.model_copy(update={"concepts": updated})
