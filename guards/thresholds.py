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
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal, TypeVar

from guards.errors import CalibrationError

Key = TypeVar("Key", bound=Hashable)
FprBudget = Literal["concept", "list"]
"""Whose false-positive budget ``target_fpr`` is: each concept's alone, or the whole list's."""


def choose_threshold(
    positive: Sequence[float], negative: Sequence[float], target_fpr: float
) -> float:
    """The lowest threshold (highest recall) whose false-positive rate on ``negative`` is within
    ``target_fpr``; placed midway to the next score up, so it does not sit on a fitted item.

    A text is in scope when its score is at least the threshold.
    """
    if not negative:
        raise CalibrationError("cannot fit a threshold without out-of-scope examples")
    ranked = sorted(negative, reverse=True)
    allowed = math.floor(target_fpr * len(ranked) + 1e-9)
    if allowed >= len(ranked):
        return max(-1.0, min([*positive, *negative]))
    bound = ranked[allowed]
    above = [s for s in (*positive, *negative) if s > bound]
    threshold = (bound + min(above)) / 2 if above else bound + 1e-6
    return min(1.0, threshold)


def shared_rate(negative: Mapping[str, Mapping[Key, float]], target_fpr: float) -> float:
    """The largest per-concept rate ``q`` such that, with every concept at its
    :func:`choose_threshold` for ``q``, at most ``target_fpr`` of all out-of-scope texts (the
    union of ``negative``'s keys) are flagged by some concept.

    ``negative[c]`` maps each out-of-scope text concept ``c`` was scored on (any hashable key,
    e.g. a probe id) to its score; a text several concepts scored is one text of the budget.
    """
    if not any(negative.values()):
        raise CalibrationError("cannot fit thresholds without out-of-scope examples")
    keys = {key for scores in negative.values() for key in scores}
    allowed = math.floor(target_fpr * len(keys) + 1e-9)
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
) -> dict[str, float]:
    """Per concept, its :func:`choose_threshold` at the :func:`shared_rate` of ``negative``;
    ``positive[c]`` are concept ``c``'s scores of its in-scope texts."""
    rate = shared_rate(negative, target_fpr)
    return {
        cid: choose_threshold(positive.get(cid, ()), list(scores.values()), rate)
        for cid, scores in negative.items()
    }
