"""Fitting per-concept thresholds on labelled examples, measured on data they were not fitted on.

For each concept, the in-scope items are its ``examples`` (plus extra positives) and the
out-of-scope items are its hard ``negatives``, the other concepts' examples (plus extra
negatives). A seeded, stratified split keeps a held-out part aside (30 %), or, when a concept has
too few items for that, k-fold cross-validation holds out each fold in turn.

Two rules keep the reported numbers honest:

- the threshold is chosen on fit-split scores only, and precision/recall are computed on
  held-out items only;
- an item is never scored by a guard that indexes it. A concept's own examples and negatives are
  index evidence, so a guard that still held them would score a held-out example 1.0 against
  itself. Every score therefore comes from the real detector on a single-concept guard built
  without the items being scored (and, while fitting, without the held-out items either).

A ``match: centroid`` concept with at least ``MIN_BACKGROUND`` out-of-scope items also gets a
fitted direction (:mod:`guards.direction`), under the same rule: each guard's direction is
whitened on the out-of-scope items it may see, never on the ones it scores, so thresholds are
read off scores the direction was not fitted on. Give a sample of ordinary traffic as
``--negatives`` for that; a handful of hand-written negatives is too few.
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
from guards.direction import MIN_BACKGROUND, fit_direction
from guards.encoder import Encoder
from guards.errors import CalibrationError, ConceptFileError
from guards.guard import Guard
from guards.jsonl import read_objects
from guards.memo_encoder import MemoEncoder, vector_store
from guards.thresholds import choose_threshold

MIN_PER_CLASS_FOR_HOLDOUT = 10


class CalibrationSettings(BaseModel):
    """How thresholds are fitted: the false-positive budget and the split."""

    target_fpr: float = Field(default=0.05, ge=0.0, le=1.0)
    holdout: float = Field(default=0.3, gt=0.0, lt=1.0)
    folds: int = Field(default=5, ge=2)
    seed: int = 0


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
class ConceptResult:
    """The outcome for one concept: a calibration to store, or why there is none."""

    concept_id: str
    calibration: Calibration | None
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
    """Scores and fits one concept. Every score comes from a guard that does not index the item."""

    def __init__(
        self,
        concepts: ConceptList,
        concept: Concept,
        encoder: Encoder,
        settings: CalibrationSettings,
    ) -> None:
        self._concepts = concepts
        self._concept = concept
        self._encoder = encoder
        self._settings = settings
        self._items: Sequence[Item] = ()

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
        background = [i.text for i in self._items if not i.positive and i.text not in drop]
        if concept.match != "centroid" or len(background) < MIN_BACKGROUND:
            return concept
        direction = fit_direction(self._encoder, concept, background)
        return concept.model_copy(update={"direction": direction})

    def fit(self, items: Sequence[Item], held_out: Sequence[Item]) -> float:
        """A threshold from out-of-fold scores of ``items``; ``held_out`` never enters a guard."""
        k = min(self._settings.folds, len(items))
        pos: list[float] = []
        neg: list[float] = []
        for fold in stratified_folds(items, k, self._settings.seed):
            if not fold:
                continue
            for item, score in zip(fold, self.score(fold, held_out), strict=True):
                (pos if item.positive else neg).append(score)
        return choose_threshold(pos, neg, self._settings.target_fpr)

    def run(self, items: Sequence[Item]) -> ConceptResult:
        self._items = items
        n_pos = sum(i.positive for i in items)
        n_neg = len(items) - n_pos
        if min(n_pos, n_neg) < 2:
            reason = f"needs at least 2 in-scope and 2 out-of-scope items (has {n_pos}/{n_neg})"
            return ConceptResult(self._concept.id, None, skipped=reason)
        settings = self._settings
        if min(n_pos, n_neg) >= MIN_PER_CLASS_FOR_HOLDOUT:
            held = holdout_split(items, settings.holdout, settings.seed)
            held_texts = {h.text for h in held}
            fit_items = [i for i in items if i.text not in held_texts]
            threshold = self.fit(fit_items, held)
            predictions = self._predict(held, threshold)
            direction = self._without(held_texts).direction
            split = f"holdout {settings.holdout:.0%} (seed {settings.seed})"
        else:
            k = min(settings.folds, n_pos, n_neg)
            predictions = []
            for held in stratified_folds(items, k, settings.seed):
                held_texts = {h.text for h in held}
                fit_items = [i for i in items if i.text not in held_texts]
                predictions += self._predict(held, self.fit(fit_items, held))
            threshold = self.fit(items, ())
            direction = self._without(set()).direction
            split = f"{k}-fold cross-validation (seed {settings.seed})"
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
        return ConceptResult(self._concept.id, calibration, fpr, direction=direction)


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
    memo = MemoEncoder(encoder, None if cache_dir is None else vector_store(cache_dir, encoder))
    unknown = sorted(set(only) - {c.id for c in concepts.concepts})
    if unknown:
        raise CalibrationError(f"unknown concept id(s): {', '.join(unknown)}")
    chosen = [c for c in concepts.concepts if not only or c.id in only]
    results = []
    for concept in tqdm(chosen, desc="calibrating", unit="concept", disable=not progress):
        items = labelled_items(concepts, concept, positives, negatives)
        # Every text the detector will encode (items and their sentences) up front, in batches,
        # instead of one call per check.
        memo.prefetch(s.text for item in items for s in segments_of([item.text]))
        results.append(ConceptCalibrator(concepts, concept, memo, settings).run(items))
    memo.save()
    return results


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
