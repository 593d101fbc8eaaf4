"""Thresholds from calibration scores: one concept's budget, and one budget for a whole list."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest

from guards.errors import CalibrationError
from guards.thresholds import allowed_false_positives, choose_threshold, list_thresholds


def test_threshold_maximises_recall_within_the_fpr_budget() -> None:
    pos = [0.9, 0.8, 0.7, 0.3]
    neg = [0.75, 0.5, 0.4, 0.2]
    strict = choose_threshold(pos, neg, 0.0)
    assert strict == pytest.approx(0.775)
    assert sum(s >= strict for s in neg) == 0
    loose = choose_threshold(pos, neg, 0.25)
    assert loose == pytest.approx(0.6)
    assert sum(s >= loose for s in neg) == 1
    assert sum(s >= loose for s in pos) == 3


def test_threshold_needs_negatives_and_stays_in_range() -> None:
    with pytest.raises(CalibrationError):
        choose_threshold([0.9], [], 0.05)
    assert choose_threshold([1.0], [1.0, 0.2], 0.0) == 1.0


def union_flagged(
    negative: Mapping[str, Mapping[str, float]], thresholds: Mapping[str, float]
) -> set[str]:
    return {k for c, scores in negative.items() for k, s in scores.items() if s >= thresholds[c]}


def test_one_concept_list_gets_the_per_concept_threshold() -> None:
    rng = random.Random(0)
    pos = [rng.random() * 0.5 + 0.5 for _ in range(40)]
    neg = [rng.random() * 0.7 for _ in range(200)]
    for target in (0.0, 0.01, 0.05, 0.2):
        joint = list_thresholds({"a": pos}, {"a": dict(enumerate(neg))}, target)
        assert joint["a"] == pytest.approx(choose_threshold(pos, neg, target))


def test_the_budget_covers_the_union_of_flagged_texts() -> None:
    # Both concepts score the same 100 ordinary texts; per-concept budgets of 5% each flag
    # 10 different ones, a list budget of 5% flags at most 5 in all.
    shared = {f"t{i}": i / 100 for i in range(100)}
    reversed_ = {f"t{i}": (99 - i) / 100 for i in range(100)}
    negative = {"a": shared, "b": reversed_}
    positive = {"a": [0.97, 0.96, 0.955], "b": [0.975, 0.965, 0.958]}
    per_concept = {c: choose_threshold(positive[c], list(negative[c].values()), 0.05) for c in "ab"}
    assert len(union_flagged(negative, per_concept)) == 10
    joint = list_thresholds(positive, negative, 0.05)
    assert len(union_flagged(negative, joint)) <= 5


def test_concepts_that_flag_the_same_texts_share_the_budget() -> None:
    # Both concepts rank the same ten texts on top: at a 10% list budget each may flag all ten.
    negative = {c: {f"t{i}": 1 - i / 100 for i in range(100)} for c in "ab"}
    positive = {"a": [0.9], "b": [0.9]}
    joint = list_thresholds(positive, negative, 0.10)
    assert union_flagged(negative, joint) == {f"t{i}" for i in range(10)}


def test_the_shared_rate_is_the_largest_that_fits() -> None:
    # Disjoint tops: "a" flags t0.., "b" flags t99..; a 6% list budget leaves 3% for each.
    negative = {
        "a": {f"t{i}": 1 - i / 100 for i in range(100)},
        "b": {f"t{i}": i / 100 for i in range(100)},
    }
    positive = {"a": [0.5], "b": [0.5]}
    joint = list_thresholds(positive, negative, 0.06)
    assert union_flagged(negative, joint) == {"t0", "t1", "t2", "t97", "t98", "t99"}
    assert len(union_flagged(negative, list_thresholds(positive, negative, 0.07))) == 6


def test_list_thresholds_need_negatives() -> None:
    with pytest.raises(CalibrationError):
        list_thresholds({"a": [0.9]}, {"a": {}}, 0.05)


def test_texts_no_threshold_can_clear_count_against_the_list_budget() -> None:
    # Scores of 1.0 (an alias named in the text) are flagged at any threshold: "a" has three of
    # its forty texts there, so a 5% list budget (4 of 80 texts) leaves one for "b".
    negative = {
        "a": {f"a{i}": 1.0 if i < 3 else 0.5 - i / 100 for i in range(40)},
        "b": {f"b{i}": 0.9 - i / 100 for i in range(40)},
    }
    joint = list_thresholds({"a": [], "b": []}, negative, 0.05)
    assert len(union_flagged(negative, joint)) <= 4
    assert {"a0", "a1", "a2"} <= union_flagged(negative, joint)


def test_a_confident_budget_holds_on_fresh_traffic_that_often() -> None:
    # Out-of-scope scores uniform on [0, 1): a threshold t really flags 1 - t of fresh traffic.
    def exceeded(confidence: float | None) -> float:
        over = 0
        for seed in range(300):
            rng = random.Random(seed)
            negative = [rng.random() for _ in range(400)]
            over += 1.0 - choose_threshold((), negative, 0.05, confidence) > 0.05
        return over / 300

    assert 0.3 < exceeded(None) < 0.7  # the fitted rate: over budget about half the time
    assert exceeded(0.9) <= 0.15


def test_allowed_false_positives_is_the_clopper_pearson_count() -> None:
    assert allowed_false_positives(789, 0.03) == 23
    assert allowed_false_positives(789, 0.03, 0.9) == 17  # beta.ppf(0.9, 18, 772) <= 0.03
    assert allowed_false_positives(20, 0.05, 0.9) == 0  # too few texts to show 5% at 90%
    with pytest.raises(CalibrationError, match="confidence"):
        allowed_false_positives(100, 0.05, 0.3)
