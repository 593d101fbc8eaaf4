"""Choosing thresholds from calibration scores: one concept's budget, or one for a whole list.

:func:`choose_threshold` gives one concept the lowest threshold whose false-positive rate on its
out-of-scope texts stays within the budget.

A served list guards all its concepts at once, so a text is refused when *any* concept's score
reaches that concept's threshold, and per-concept budgets add up: two concepts at 3% each can
refuse up to 6% of ordinary traffic. :func:`list_thresholds` keeps the share of out-of-scope texts
flagged by at least one concept within one budget: every concept gets the same per-concept rate
``q`` (its :func:`choose_threshold` at ``q``), the largest ``q`` whose union stays within the
budget. A text two concepts both flag is counted once, so overlapping concepts get more than
``budget / K`` each.

Rejected: a greedy allocation that spends the budget where the fitted in-scope texts gain the
most recall. On WMDP (789 calibration negatives, ~640/1,000 in-scope probes) it met the budget
on the calibration part (2.9%) but flagged 3.8% of the held-out part, against 2.9% for the
shared rate: choosing among many thresholds by the same texts that measure them overfits, and
with ``nescio calibrate``'s 20 examples per concept it would be noise. One shared rate is a
single fitted number, and transfers like one concept's threshold.

A budget met on the calibration texts is met on fresh traffic only about half the time: the
false-positive rate read off ``n`` texts is an estimate. With ``confidence`` set, a threshold
must keep the rate's one-sided Clopper-Pearson upper bound at that confidence within the budget
instead (:func:`allowed_false_positives`), so it also holds on fresh traffic that often; it
costs recall, the more so the fewer out-of-scope texts there are.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal, TypeVar

from guards.errors import CalibrationError

Key = TypeVar("Key", bound=Hashable)
FprBudget = Literal["concept", "list"]
"""Whose false-positive budget ``target_fpr`` is: each concept's alone, or the whole list's."""


def allowed_false_positives(n: int, target_fpr: float, confidence: float | None = None) -> int:
    """How many of ``n`` out-of-scope texts a threshold may flag within ``target_fpr``.

    Without ``confidence``: ``floor(target_fpr * n)``, the budget met on these texts. With it:
    the largest ``k`` whose one-sided Clopper-Pearson upper bound on the rate, at that
    confidence, is within ``target_fpr``; 0 (flag nothing that can be cleared) when even ``k = 0``
    is not, i.e. when ``n`` is too small to show the budget at that confidence.
    """
    point = math.floor(target_fpr * n + 1e-9)
    if confidence is None:
        return point
    if not 0.5 <= confidence < 1.0:
        raise CalibrationError(f"confidence must be in [0.5, 1), got {confidence}")
    from scipy.stats import beta  # imported here: scipy.stats costs every `nescio` start ~0.5 s

    allowed = 0
    for k in range(min(point, n - 1) + 1):  # the upper bound is at least k/n
        if float(beta.ppf(confidence, k + 1, n - k)) > target_fpr:
            break
        allowed = k
    return allowed


def choose_threshold(
    positive: Sequence[float],
    negative: Sequence[float],
    target_fpr: float,
    confidence: float | None = None,
) -> float:
    """The lowest threshold (highest recall) whose false-positive rate on ``negative`` is within
    ``target_fpr`` (its upper bound at ``confidence``, when given:
    :func:`allowed_false_positives`); placed midway to the next score up, so it does not sit on
    a fitted item.

    A text is in scope when its score is at least the threshold.
    """
    if not negative:
        raise CalibrationError("cannot fit a threshold without out-of-scope examples")
    ranked = sorted(negative, reverse=True)
    allowed = allowed_false_positives(len(ranked), target_fpr, confidence)
    if allowed >= len(ranked):
        return max(-1.0, min([*positive, *negative]))
    bound = ranked[allowed]
    above = [s for s in (*positive, *negative) if s > bound]
    threshold = (bound + min(above)) / 2 if above else bound + 1e-6
    return min(1.0, threshold)


def shared_rate(
    negative: Mapping[str, Mapping[Key, float]],
    target_fpr: float,
    confidence: float | None = None,
) -> float:
    """The largest per-concept rate ``q`` such that, with every concept at its
    :func:`choose_threshold` for ``q``, at most ``target_fpr`` of all out-of-scope texts (the
    union of ``negative``'s keys) are flagged by some concept (its upper bound at
    ``confidence``, when given).

    ``negative[c]`` maps each out-of-scope text concept ``c`` was scored on (any hashable key,
    e.g. a probe id) to its score; a text several concepts scored is one text of the budget.
    """
    if not any(negative.values()):
        raise CalibrationError("cannot fit thresholds without out-of-scope examples")
    keys = {key for scores in negative.values() for key in scores}
    allowed = allowed_false_positives(len(keys), target_fpr, confidence)
    ranked = {c: s for c, s in negative.items() if s}

    def flagged(rate: float) -> int:
        union: set[Key] = set()
        for scores in ranked.values():
            # in-scope scores move a threshold within a gap, never past an out-of-scope score
            threshold = choose_threshold((), list(scores.values()), rate)
            union.update(k for k, v in scores.items() if v >= threshold)
        return len(union)

    # Every rate at which some concept's threshold moves, lowest first; the union only grows.
    rates = sorted({m / len(s) for s in ranked.values() for m in range(len(s) + 1)})
    # rates[0] == 0.0 is the strictest there is: it flags only what no threshold can clear
    low, high = 0, len(rates) - 1
    while low < high:
        mid = (low + high + 1) // 2
        if flagged(rates[mid]) <= allowed:
            low = mid
        else:
            high = mid - 1
    return rates[low]


def list_thresholds(
    positive: Mapping[str, Sequence[float]],
    negative: Mapping[str, Mapping[Key, float]],
    target_fpr: float,
    confidence: float | None = None,
) -> dict[str, float]:
    """Per concept, its :func:`choose_threshold` at the :func:`shared_rate` of ``negative``;
    ``positive[c]`` are concept ``c``'s scores of its in-scope texts."""
    rate = shared_rate(negative, target_fpr, confidence)
    return {
        cid: choose_threshold(positive.get(cid, ()), list(scores.values()), rate)
        for cid, scores in negative.items()
    }
