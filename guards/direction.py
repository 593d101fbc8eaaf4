"""A fitted direction for a topic concept: its centroid, whitened against ordinary traffic.

A ``match: centroid`` concept scores a text by its cosine to the mean of the concept's name,
description and examples. That mean also points along everything its texts share with any
question (being a question, a multiple-choice layout, code, science vocabulary), so ordinary
prompts of the same shape score high too. Linear discriminant analysis removes that part: with
the mean ``mu`` and covariance ``S`` of a background of out-of-scope texts (a sample of the
traffic the guard will see), the direction is ``S^-1 (centroid - mu)``, normalised. Directions in
which ordinary texts vary a lot count less, the ones only the concept's texts take count more.

``S`` comes from a few hundred texts in a 384-dimensional space, so it is shrunk towards a scaled
identity (``(1 - s) S + s tr(S)/d I``); ``s = 1`` gives back the centroid minus the background
mean. The default, 0.7, was best on WMDP vs MMLU calibration halves averaged over both
domains; Ledoit-Wolf's estimate (0.14) overfits the background. The best value differs by
concept, though (WMDP cyber: cross-fitted recall 94.5% at 0.7, 96.2% at 0.5; bio flat within
one point from 0.3 to 0.9), so the calibrators try :data:`SHRINKAGES` per concept and keep one
by :func:`pick_shrinkage`: the default unless another value is clearly better on the
calibration data.

A direction fitted on some background texts scores those texts lower than fresh ones, so a
threshold must never be read off the texts the direction was whitened on: the callers
(:mod:`guards.calibrate`, :mod:`evals.detection.split_calibration`) cross-fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

from guards.concepts import Concept, Direction
from guards.encoder import Encoder
from guards.errors import CalibrationError
from guards.thresholds import choose_threshold

SHRINKAGE = 0.7
SHRINKAGES = (0.3, 0.5, 0.7, 0.9)
"""The values the calibrators try per concept (the default among them)."""
MIN_BACKGROUND = 50


def centroid_texts(concept: Concept) -> list[str]:
    """The texts a centroid concept is the mean of: name, aliases, description, examples."""
    texts = [*concept.surface_forms, concept.description, *concept.examples]
    return [t for t in texts if t.strip()]


def fit_direction(
    encoder: Encoder,
    concept: Concept,
    background: Sequence[str],
    shrinkage: float = SHRINKAGE,
) -> Direction:
    """The whitened centroid of ``concept`` against ``background`` (out-of-scope texts).

    Raises :class:`CalibrationError` with fewer than ``MIN_BACKGROUND`` distinct background
    texts: a covariance from fewer says more about the sample than about the traffic.
    """
    texts = list(dict.fromkeys(background))
    if len(texts) < MIN_BACKGROUND:
        raise CalibrationError(
            f"concept {concept.id!r}: a direction needs at least {MIN_BACKGROUND} out-of-scope "
            f"texts, got {len(texts)}"
        )
    target = encoder.encode(centroid_texts(concept)).astype(np.float64).mean(axis=0)
    vectors = encoder.encode(texts).astype(np.float64)
    mean = vectors.mean(axis=0)
    covariance = np.cov(vectors, rowvar=False)
    dim = covariance.shape[0]
    # A floor on the identity's scale keeps a degenerate background (identical texts) solvable.
    scale = max(float(np.trace(covariance)) / dim, 1e-6)
    shrunk = (1.0 - shrinkage) * covariance + shrinkage * scale * np.eye(dim)
    weights = np.linalg.solve(shrunk, target - mean)
    weights /= max(float(np.linalg.norm(weights)), 1e-12)
    return Direction(
        encoder=encoder.name,
        n_background=len(texts),
        shrinkage=shrinkage,
        vector=[round(float(w), 6) for w in weights],
        fitted_at=datetime.now(UTC).replace(microsecond=0),
    )


def pick_shrinkage(
    scores: Mapping[float, tuple[Sequence[float], Sequence[float]]], target_fpr: float
) -> float:
    """The shrinkage to keep, from ``scores[s] = (in-scope, out-of-scope)`` calibration scores
    of the concept's guard with a direction of shrinkage ``s`` (out-of-scope ones cross-fitted).

    Each value's recall is read at its :func:`choose_threshold` for ``target_fpr``. The
    one-standard-error rule, towards the default: :data:`SHRINKAGE` unless the best recall beats
    its own by more than one standard error (``sqrt(r (1 - r) / n)`` for ``n`` in-scope
    texts), else the value nearest the default (the larger on a tie: more shrinkage) among
    those within one standard error of the best. With 20 examples that error is 5-7 points at
    90-95% recall, so only a large gain moves it; differences within the noise of the count
    never do.
    """
    if SHRINKAGE not in scores:
        raise CalibrationError(f"shrinkage scores must include the default {SHRINKAGE}")
    recall = {}
    for shrinkage, (positive, negative) in scores.items():
        threshold = choose_threshold(positive, negative, target_fpr)
        recall[shrinkage] = sum(s >= threshold for s in positive) / max(len(positive), 1)
    best = max(recall.values())
    error = math.sqrt(best * (1.0 - best) / max(len(scores[SHRINKAGE][0]), 1))
    if recall[SHRINKAGE] >= best - error:
        return SHRINKAGE
    close = [s for s, r in recall.items() if r >= best - error]
    return min(close, key=lambda s: (abs(s - SHRINKAGE), -s))
