"""Fitting per-concept thresholds on labelled examples, measured on data they were not fitted on.

For each concept, the in-scope items are its ``examples`` (plus extra positives) and the
out-of-scope items are its hard ``negatives``, the other concepts' examples (plus extra
negatives). A seeded, stratified split keeps a held-out part aside (30 %), or, when a concept has
too few items for that, k-fold cross-validation holds out each fold in turn.

Two rules keep the reported numbers honest:

- the threshold that is measured is chosen on fit-split scores only, and precision/recall are
  computed on held-out items only; the threshold (and direction) then *stored* is refitted the
  same way on all items, so it rests on every example and traffic prompt given (the reported
  numbers describe the procedure, measured with a little less data);
- an item is never scored by a guard that indexes it. A concept's own examples and negatives are
  index evidence, so a guard that still held them would score a held-out example 1.0 against
  itself. Every score therefore comes from the real detector on a single-concept guard built
  without the items being scored (and, while fitting, without the held-out items either).

A ``match: centroid`` concept with at least ``MIN_BACKGROUND`` out-of-scope items also gets a
fitted direction (:mod:`guards.direction`), under the same rule: each guard's direction is
whitened on the out-of-scope items it may see, never on the ones it scores, so thresholds are
read off scores the direction was not fitted on. Give a sample of ordinary traffic as
``--negatives`` for that; a handful of hand-written negatives is too few. The direction's
shrinkage is picked with the threshold, on the same out-of-fold scores
(:func:`guards.direction.pick_shrinkage`: the default unless another value is clearly better).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field
from tqdm import tqdm

from guards.concepts import Calibration, Concept, ConceptList, Direction
from guards.detector import segments_of
from guards.direction import MIN_BACKGROUND, SHRINKAGE, SHRINKAGES, fit_direction, pick_shrinkage
from guards.encoder import Encoder
from guards.errors import CalibrationError, ConceptFileError
from guards.guard import Guard
from guards.jsonl import read_objects
from guards.memo_encoder import memoized
from guards.thresholds import FprBudget, choose_threshold, shared_rate

MIN_PER_CLASS_FOR_HOLDOUT = 10


class CalibrationSettings(BaseModel):
    """How thresholds are fitted: the false-positive budget and the split.

    ``budget="concept"``: each concept may flag ``target_fpr`` of its own out-of-scope items.
    ``"list"``: every calibrated concept gets the same rate, the largest at which the share of
    out-of-scope texts flagged by *any* of them stays within ``target_fpr``: the share of the
    traffic sample (``--negatives`` without a concept id) when one is given, else of all
    out-of-scope items (:func:`not_counted`); that is what a list guarding all at once refuses.
    ``confidence``: hold that budget's upper confidence bound, not the fitted rate
    (:func:`guards.thresholds.allowed_false_positives`).
    """

    target_fpr: float = Field(default=0.05, ge=0.0, le=1.0)
    holdout: float = Field(default=0.3, gt=0.0, lt=1.0)
    folds: int = Field(default=5, ge=2)
    seed: int = 0
    budget: FprBudget = "concept"
    confidence: float | None = Field(default=None, ge=0.5, lt=1.0)


@dataclass(frozen=True, slots=True)
class LabelledText:
    """One extra labelled prompt; ``concept_id`` None means out of scope for every concept."""

    text: str
    concept_id: str | None


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    positive: bool


@dataclass(frozen=True, slots=True)
class Scores:
    """Out-of-fold scores of one concept's items: in-scope ones, and out-of-scope ones by text."""

    positive: list[float]
    negative: dict[str, float]


@dataclass(frozen=True, slots=True)
class ConceptResult:
    """The outcome for one concept: a calibration to store, or why there is none.

    ``target_fpr`` is the budget its threshold was fitted at (below the settings' own with a list
    budget); ``false_positive_rate`` is measured on held-out items.
    """

    concept_id: str
    calibration: Calibration | None
    target_fpr: float = 0.0
    false_positive_rate: float = 0.0
    skipped: str | None = None
    direction: Direction | None = None


def read_labelled(path: Path, *, known: set[str], require_concept: bool) -> list[LabelledText]:
    """JSONL ``{"text": ..., "concept_id": ...}``; errors name the file, line and field."""
    items: list[LabelledText] = []
    for number, row in read_objects(path):
        text, concept_id = row.get("text"), row.get("concept_id")
        if not isinstance(text, str) or not text.strip():
            raise ConceptFileError(path, "must be a non-empty string", line=number, field="text")
        if concept_id is None and not require_concept:
            items.append(LabelledText(text, None))
            continue
        if not isinstance(concept_id, str) or concept_id not in known:
            reason = "required" if concept_id is None else f"unknown concept id {concept_id!r}"
            raise ConceptFileError(path, reason, line=number, field="concept_id")
        items.append(LabelledText(text, concept_id))
    return items


def labelled_items(
    concepts: ConceptList,
    concept: Concept,
    positives: Iterable[LabelledText] = (),
    negatives: Iterable[LabelledText] = (),
) -> list[Item]:
    """The concept's in-scope and hard out-of-scope items, deduplicated; positives win ties."""
    pos = [*concept.examples, *(p.text for p in positives if p.concept_id == concept.id)]
    others = [e for c in concepts.concepts if c.id != concept.id for e in c.examples]
    own_negatives = [n.text for n in negatives if n.concept_id in {None, concept.id}]
    neg = [*concept.negatives, *others, *own_negatives]
    seen: set[str] = set()
    items: list[Item] = []
    for text, positive in [*((t, True) for t in pos), *((t, False) for t in neg)]:
        if text not in seen:
            seen.add(text)
            items.append(Item(text, positive))
    return items


def stratified_folds(items: Sequence[Item], k: int, seed: int) -> list[list[Item]]:
    """``k`` disjoint folds covering ``items``, each class shuffled (seeded) and dealt round-robin."""
    folds: list[list[Item]] = [[] for _ in range(k)]
    rng = random.Random(seed)
    for label in (True, False):
        group = sorted((i for i in items if i.positive is label), key=lambda i: i.text)
        rng.shuffle(group)
        for n, item in enumerate(group):
            folds[n % k].append(item)
    return folds


def holdout_split(items: Sequence[Item], fraction: float, seed: int) -> list[Item]:
    """The held-out items: ``fraction`` of each class (at least one), seeded."""
    rng = random.Random(seed)
    held: list[Item] = []
    for label in (True, False):
        group = sorted((i for i in items if i.positive is label), key=lambda i: i.text)
        rng.shuffle(group)
        held += group[: max(1, math.ceil(fraction * len(group)))]
    return held


class ConceptCalibrator:
    """Scores and fits one concept on its labelled ``items``. Every score comes from a guard that
    does not index the item."""

    def __init__(
        self,
        concepts: ConceptList,
        concept: Concept,
        encoder: Encoder,
        settings: CalibrationSettings,
        items: Sequence[Item],
        *,
        not_negative: Iterable[str] = (),
        share: float = 1.0,
    ) -> None:
        """``not_negative``: out-of-scope texts that do not count against the budget (a list
        budget's :func:`not_counted` texts); ``share``: the part of ``target_fpr`` this concept
        is held to while its direction's shrinkage is picked (``1 / K`` of a list budget)."""
        self._concepts = concepts
        self._concept = concept
        self._encoder = encoder
        self._settings = settings
        self.items = items
        self._target_fpr = settings.target_fpr
        self._confidence = settings.confidence
        self._not_negative = frozenset(not_negative)
        self._share = share
        self._shrinkage = SHRINKAGE
        self._scored: dict[tuple[frozenset[str], frozenset[str], float], Scores] = {}

    def score(self, items: Sequence[Item], excluded: Iterable[Item]) -> list[float]:
        """Detector scores for ``items`` from a guard built without ``items`` and ``excluded``."""
        drop = {i.text for i in items} | {i.text for i in excluded}
        concept = self._without(drop).model_copy(update={"threshold": 1.0, "calibration": None})
        single = self._concepts.model_copy(update={"concepts": [concept]})
        guard = Guard.build(single, encoder=self._encoder)
        return [guard.check([item.text]).score for item in items]

    def _without(self, drop: set[str]) -> Concept:
        """The concept without the ``drop`` texts, and (centroid concepts with enough
        out-of-scope items left) a direction fitted on what remains, never on ``drop``."""
        concept = self._concept.model_copy(
            update={
                "examples": [e for e in self._concept.examples if e not in drop],
                "negatives": [n for n in self._concept.negatives if n not in drop],
                "direction": None,
            }
        )
        background = [i.text for i in self.items if not i.positive and i.text not in drop]
        if concept.match != "centroid" or len(background) < MIN_BACKGROUND:
            return concept
        direction = fit_direction(self._encoder, concept, background, self._shrinkage)
        return concept.model_copy(update={"direction": direction})

    def out_of_fold(self, items: Sequence[Item], held_out: Sequence[Item]) -> Scores:
        """Scores of ``items``, each from a guard built without its fold and without
        ``held_out``: in-scope ones, and out-of-scope ones by text. Computed once per split
        (and shrinkage)."""
        texts = (frozenset(i.text for i in items), frozenset(i.text for i in held_out))
        key = (*texts, self._shrinkage)
        if key not in self._scored:
            k = min(self._settings.folds, len(items))
            pos: list[float] = []
            neg: dict[str, float] = {}
            for fold in stratified_folds(items, k, self._settings.seed):
                if not fold:
                    continue
                for item, score in zip(fold, self.score(fold, held_out), strict=True):
                    if item.positive:
                        pos.append(score)
                    else:
                        neg[item.text] = score
            self._scored[key] = Scores(pos, neg)
        return self._scored[key]

    def fit(self, items: Sequence[Item], held_out: Sequence[Item]) -> float:
        """A threshold (and, for a directed concept, the direction's shrinkage, kept for the
        guards that follow) from out-of-fold scores of ``items``; ``held_out`` never enters a
        guard."""
        self._pick_shrinkage(items, held_out)
        scores = self.out_of_fold(items, held_out)
        negative = list(self._counted(scores).values())
        return choose_threshold(scores.positive, negative, self._target_fpr, self._confidence)

    def _counted(self, scores: Scores) -> dict[str, float]:
        """``scores``' out-of-scope texts that count against the budget."""
        return {t: v for t, v in scores.negative.items() if t not in self._not_negative}

    def counted_negatives(self) -> dict[str, float]:
        """:meth:`threshold_scores` of the out-of-scope texts that count against the budget."""
        return self._counted(self.threshold_scores())

    def _pick_shrinkage(self, items: Sequence[Item], held_out: Sequence[Item]) -> None:
        """:func:`guards.direction.pick_shrinkage` over out-of-fold scores of ``items`` at each of
        :data:`guards.direction.SHRINKAGES`, at this concept's share of the budget."""
        n_background = sum(not i.positive for i in items)
        if self._concept.match != "centroid" or n_background < MIN_BACKGROUND:
            return
        tried = {}
        for shrinkage in SHRINKAGES:
            self._shrinkage = shrinkage
            scores = self.out_of_fold(items, held_out)
            tried[shrinkage] = (scores.positive, list(self._counted(scores).values()))
        self._shrinkage = pick_shrinkage(tried, self._settings.target_fpr * self._share)

    def _class_sizes(self) -> tuple[int, int]:
        """``(in-scope, out-of-scope)`` item counts."""
        n_pos = sum(i.positive for i in self.items)
        return n_pos, len(self.items) - n_pos

    def skipped(self) -> str | None:
        """Why this concept cannot be calibrated, or ``None``."""
        n_pos, n_neg = self._class_sizes()
        if min(n_pos, n_neg) < 2:
            return f"needs at least 2 in-scope and 2 out-of-scope items (has {n_pos}/{n_neg})"
        return None

    def _holdout(self) -> list[Item] | None:
        """The held-out items, or ``None`` when the concept is too small and is cross-validated."""
        if min(self._class_sizes()) < MIN_PER_CLASS_FOR_HOLDOUT:
            return None
        return holdout_split(self.items, self._settings.holdout, self._settings.seed)

    def threshold_scores(self) -> Scores:
        """The out-of-fold scores the stored threshold is read from (all items', at the
        shrinkage picked on them)."""
        self._pick_shrinkage(self.items, ())
        return self.out_of_fold(self.items, ())

    def run(self, target_fpr: float | None = None) -> ConceptResult:
        """Fit at ``target_fpr`` (default: the settings', at their confidence; a given rate, a
        list budget's share, is used as it is) and measure on held-out items."""
        self._target_fpr = self._settings.target_fpr if target_fpr is None else target_fpr
        self._confidence = self._settings.confidence if target_fpr is None else None
        if (reason := self.skipped()) is not None:
            return ConceptResult(self._concept.id, None, self._target_fpr, skipped=reason)
        items, settings = self.items, self._settings
        n_pos, n_neg = self._class_sizes()
        held = self._holdout()
        if held is not None:
            held_texts = {h.text for h in held}
            fit_items = [i for i in items if i.text not in held_texts]
            predictions = self._predict(held, self.fit(fit_items, held))
            split = f"holdout {settings.holdout:.0%} (seed {settings.seed})"
        else:
            k = min(settings.folds, n_pos, n_neg)
            predictions = []
            for fold in stratified_folds(items, k, settings.seed):
                fold_texts = {h.text for h in fold}
                fit_items = [i for i in items if i.text not in fold_texts]
                predictions += self._predict(fold, self.fit(fit_items, fold))
            split = f"{k}-fold cross-validation (seed {settings.seed})"
        # measured above; what is stored is refitted the same way on every item
        threshold = self.fit(items, ())
        direction = self._without(set()).direction
        return self._result(threshold, predictions, n_pos, n_neg, split, direction)

    def _predict(self, held: Sequence[Item], threshold: float) -> list[tuple[bool, bool]]:
        scores = self.score(held, ())
        return [
            (item.positive, score >= threshold) for item, score in zip(held, scores, strict=True)
        ]

    def _result(
        self,
        threshold: float,
        predictions: Sequence[tuple[bool, bool]],
        n_pos: int,
        n_neg: int,
        split: str,
        direction: Direction | None,
    ) -> ConceptResult:
        tp = sum(truth and flagged for truth, flagged in predictions)
        fp = sum(flagged and not truth for truth, flagged in predictions)
        positives = sum(truth for truth, _ in predictions)
        negatives = len(predictions) - positives
        calibration = Calibration(
            threshold=round(threshold, 4),
            encoder=self._encoder.name,
            precision=round(tp / (tp + fp), 4) if tp + fp else 0.0,
            recall=round(tp / positives, 4) if positives else 0.0,
            n_positive=n_pos,
            n_negative=n_neg,
            split=split,
            fitted_at=datetime.now(UTC).replace(microsecond=0),
        )
        fpr = fp / negatives if negatives else 0.0
        return ConceptResult(
            self._concept.id, calibration, self._target_fpr, fpr, direction=direction
        )


def calibrate(
    concepts: ConceptList,
    encoder: Encoder,
    *,
    settings: CalibrationSettings | None = None,
    positives: Sequence[LabelledText] = (),
    negatives: Sequence[LabelledText] = (),
    only: Sequence[str] = (),
    progress: bool = False,
    cache_dir: Path | None = None,
) -> list[ConceptResult]:
    """Fit and measure a threshold for each concept (or those in ``only``); with ``cache_dir``,
    encoded texts persist in its vector store (:func:`guards.memo_encoder.vector_store`)."""
    settings = settings or CalibrationSettings()
    memo = memoized(encoder, cache_dir)
    unknown = sorted(set(only) - {c.id for c in concepts.concepts})
    if unknown:
        raise CalibrationError(f"unknown concept id(s): {', '.join(unknown)}")
    chosen = [c for c in concepts.concepts if not only or c.id in only]
    items_of = [labelled_items(concepts, concept, positives, negatives) for concept in chosen]
    for items in items_of:
        # Every text the detector will encode (items and their sentences) up front, in batches,
        # instead of one call per check.
        memo.prefetch(s.text for item in items for s in segments_of([item.text]))
    joint = settings.budget == "list"
    traffic = {n.text for n in negatives if n.concept_id is None}
    uncounted = not_counted(items_of, traffic) if joint else set()
    calibrators = [
        ConceptCalibrator(
            concepts,
            concept,
            memo,
            settings,
            items,
            not_negative=uncounted,
            share=1.0 / len(chosen) if joint else 1.0,
        )
        for concept, items in zip(chosen, items_of, strict=True)
    ]
    rate = list_rate(calibrators, settings, progress) if joint else None
    results = [
        c.run(rate)
        for c in tqdm(calibrators, desc="calibrating", unit="concept", disable=not progress)
    ]
    memo.save()
    return results


def not_counted(items_of: Sequence[Sequence[Item]], traffic: set[str]) -> set[str]:
    """Out-of-scope items a list budget does not count, given each calibrated concept's items:
    texts some calibrated concept has in scope (the list refuses them anyway) and, when a
    traffic sample is given (``--negatives`` without a concept id), every other item, so the
    budget is the share of *traffic* refused. Hand-written negatives are near misses on
    purpose, far denser than in real traffic."""
    in_scope = {i.text for items in items_of for i in items if i.positive}
    if not traffic:
        return in_scope
    return in_scope | {i.text for items in items_of for i in items if i.text not in traffic}


def list_rate(
    calibrators: Sequence[ConceptCalibrator],
    settings: CalibrationSettings,
    progress: bool = False,
) -> float:
    """The per-concept rate that keeps the texts flagged by any concept within the settings'
    ``target_fpr`` (at their ``confidence``) of the out-of-scope texts each calibrator counts
    (all items, out-of-fold scores; not its ``not_negative`` ones, :func:`not_counted`)."""
    scored = [
        c.counted_negatives()
        for c in tqdm(calibrators, desc="scoring for the list budget", disable=not progress)
        if c.skipped() is None
    ]
    negative = {str(n): scores for n, scores in enumerate(scored)}
    if not any(negative.values()):
        raise CalibrationError("a list budget needs out-of-scope items that no concept covers")
    return shared_rate(negative, settings.target_fpr, settings.confidence)


def apply_results(concepts: ConceptList, results: Sequence[ConceptResult]) -> ConceptList:
    """A copy of ``concepts`` with ``threshold: calibrated``, the fitted block and (centroid
    concepts) the fitted direction, or none, per calibrated concept."""
    fitted = {r.concept_id: r for r in results if r.calibration is not None}
    updated = [
        c.model_copy(
            update={
                "threshold": "calibrated",
                "calibration": fitted[c.id].calibration,
                "direction": fitted[c.id].direction,
            }
        )
        if c.id in fitted
        else c
        for c in concepts.concepts
    ]
    return concepts.model_copy(update={"concepts": updated})
