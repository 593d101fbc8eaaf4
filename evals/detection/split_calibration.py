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
of that background scored by a direction fitted on the other half).

A probe is flagged exactly when its concept's score reaches the concept's threshold, so
thresholds are fitted from the recorded scores of the detector under evaluation. With the
embedding detector every concept has one; the learned detector uses per-concept thresholds only
for ``match: centroid`` concepts (people share the scorer's probability threshold, fitted by
:mod:`evals.detection.fit_scorer` on other targets), so only those are fitted for it.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.detection.plan import Setting, plan
from evals.detection.run import TextField, probe_text, run_jobs
from evals.probes import Probe
from guards.concepts import Calibration, ConceptList
from guards.direction import MIN_BACKGROUND, fit_direction
from guards.encoder import Encoder
from guards.guard import DetectorKind
from guards.memo_encoder import MemoEncoder, memoized
from guards.thresholds import FprBudget, choose_threshold, list_thresholds

Record = dict[str, Any]
CALIBRATED_FILE = "concepts.calibrated.yaml"


@dataclass(frozen=True, slots=True)
class SplitCalibration:
    """The share of probes fitted on, and the false-positive budget: for each concept's guard
    alone (``"concept"``), or for the whole list guarding at once (``"list"``)."""

    fraction: float = 0.5
    target_fpr: float = 0.03
    budget: FprBudget = "concept"


def in_calibration_part(probe_id: str, fraction: float) -> bool:
    """A stable, seed-free draw: the same id lands in the same part on every machine and run."""
    digest = hashlib.sha256(probe_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


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
) -> tuple[ConceptList, list[Probe], dict[str, Any]]:
    """Fit thresholds (and centroid concepts' directions) on the calibration part, single
    setting, with ``detector``.

    Returns the concepts with those thresholds and directions, the report part of the probes,
    and what was fitted (for the summary).
    """
    fit_part, report_part = split_probes(probes, calibrate.fraction)
    encoder = memoized(encoder, cache_dir)  # one vector store for the fitter and every run
    fitter = _DirectionFitter(concepts, fit_part, encoder, text_field)
    fitted_concepts = fitter.concepts(fold=None)

    def single(listed: ConceptList, part: Sequence[Probe]) -> list[Record]:
        records, _ = run_jobs(
            listed,
            plan(listed, part, [Setting.SINGLE]),
            encoder,
            cache_dir=cache_dir,
            text_field=text_field,
            progress=progress,
            detector=detector,
        )
        return records

    records = single(fitted_concepts, fit_part)
    if fitter.directed:
        # Cross-fitting: each half of a concept's background is scored by a direction whitened
        # on the other half only, so the threshold never rests on texts that shaped the direction.
        records = [r for r in records if not fitter.refitted(r)]
        for fold in (True, False):
            part = [p for p in fit_part if in_direction_fold(p.id) is fold]
            scored = single(fitter.concepts(fold=not fold), part)
            records += [r for r in scored if fitter.refitted(r)]
    if detector == "learned":
        topics = {c.id for c in concepts.concepts if c.match == "centroid"}
        records = [r for r in records if r["guard"] in topics]
    thresholds = fit_thresholds(records, calibrate.target_fpr, calibrate.budget)
    fitted = {
        "split": f"hash split: fitted on {calibrate.fraction:.0%} of the probes, "
        "measured on the rest",
        "fraction": calibrate.fraction,
        "target_fpr": calibrate.target_fpr,
        "fpr_budget": calibrate.budget,
        "n_calibration_probes": len(fit_part),
        "thresholds": thresholds,
        "directions": {
            c.id: c.direction.n_background
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

    def concepts(self, fold: bool | None) -> ConceptList:
        """The list with directions whitened on all of the background (``None``) or one fold."""
        updated = []
        for concept in self._concepts.concepts:
            if concept.id in self.directed:
                texts = [
                    probe_text(p, self._text_field)
                    for p in self._background[concept.id]
                    if fold is None or in_direction_fold(p.id) is fold
                ]
                direction = fit_direction(self._encoder, concept, texts)
                concept = concept.model_copy(update={"direction": direction})
            updated.append(concept)
        self._encoder.save()
        return self._concepts.model_copy(update={"concepts": updated})

    def refitted(self, record: Record) -> bool:
        """Whether a record's score must come from a direction fitted without it."""
        return record["guard"] in self.directed and record["kind"] != "forget"


def fit_thresholds(
    records: Sequence[Record], target_fpr: float, budget: FprBudget = "concept"
) -> dict[str, float]:
    """Per concept (single-setting records of the calibration part): its fitted threshold."""
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
    if budget == "list":
        return dict(sorted(list_thresholds(positive, negative, target_fpr).items()))
    return {
        concept: choose_threshold(positive[concept], list(scores.values()), target_fpr)
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
