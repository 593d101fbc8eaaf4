"""The soak's pure parts: judging an answer, classifying failures against the restart window,
the RSS verdict, and the summary's targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.hostile.soak import (
    MIX,
    Outcome,
    SoakConfig,
    SoakRun,
    Window,
    classify,
    judge,
    percentile,
    rss_change,
    rss_flat,
    summarize,
)

WINDOW = [Window(start=30.0, end=33.5)]
PROBES = {probe.kind: probe for probe in MIX}


def failure(started: float, ended: float, status: int | None, error_event: bool = False) -> Outcome:
    return Outcome("chat", started, ended, status, "failed", error_event)


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Outcome("chat", 31.0, 31.1, 200, None), "served"),
        (failure(31.0, 31.1, 502), "expected"),
        (failure(32.0, 32.0, 504), "expected"),
        (failure(29.0, 30.5, 502), "expected"),  # in flight when the upstream stopped
        (failure(33.4, 34.0, 502), "expected"),  # began inside the tail of the window
        (failure(31.0, 31.1, 200, error_event=True), "expected"),
        (failure(10.0, 10.1, 502), "unexpected"),  # before the restart
        (failure(33.6, 33.7, 502), "unexpected"),  # after the window closed
        (failure(31.0, 31.1, 503), "unexpected"),  # in the window, but not an upstream failure
        (failure(31.0, 31.1, None), "unexpected"),  # no answer at all
        (failure(31.0, 31.1, 500), "unexpected"),
    ],
)
def test_classify_against_the_restart_window(outcome: Outcome, expected: str) -> None:
    assert classify(outcome, WINDOW) == expected


def test_without_a_restart_every_failure_is_unexpected() -> None:
    assert classify(failure(31.0, 31.1, 502), []) == "unexpected"


@pytest.mark.parametrize(
    ("kind", "status", "header", "text", "done", "event", "problem"),
    [
        ("chat", 200, "allow", "...What is the capital of France?...", False, False, None),
        ("chat", 200, "allow", "something else", False, False, "answer does not echo the prompt"),
        ("chat", 502, "", "", False, False, "HTTP 502"),
        ("chat_stream", 200, "allow", "What is the capital of France?", True, False, None),
        ("chat_stream", 200, "allow", "What is the capital", False, False, "without [DONE]"),
        ("chat_stream", 200, "allow", "", True, True, "error event"),
        ("refused", 200, "refuse; concept=harry-potter", "I can't discuss it.", False, False, None),
        ("refused", 200, "allow", "I can't discuss it.", False, False, "expected refuse"),
        (
            "refused",
            200,
            "refuse; concept=harry-potter",
            "Who is the headmaster of Hogwarts?",
            False,
            False,
            "answered by the upstream",
        ),
        ("completion", 200, "refuse; x", "The capital of France is", False, False, "refused"),
    ],
)
def test_judge(
    kind: str, status: int, header: str, text: str, done: bool, event: bool, problem: str | None
) -> None:
    verdict = judge(PROBES[kind], status, header, text, done, event)
    if problem is None:
        assert verdict is None
    else:
        assert verdict is not None and problem in verdict


def test_rss_verdict_is_flat_within_the_tolerance_either_way() -> None:
    assert rss_change(100, 105) == pytest.approx(0.05)
    assert rss_flat(100, 110)
    assert rss_flat(100, 90)
    assert not rss_flat(100, 111)
    assert not rss_flat(100, 89)
    assert rss_flat(100, 115, tolerance=0.2)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0


def test_summary_targets() -> None:
    run = SoakRun(SoakConfig(concepts=Path("c.yaml"), duration=60.0, clients=2))
    run.outcomes = [
        Outcome("chat", 1.0, 1.01, 200, None),
        Outcome("refused", 2.0, 2.02, 200, None),
        failure(31.0, 31.0, 502),
        failure(50.0, 50.0, 500),
    ]
    run.windows = list(WINDOW)
    run.rss = [(0.0, 100_000_000), (30.0, 130_000_000), (60.0, 104_000_000)]
    run.elapsed = 60.0
    summary = summarize(run)
    targets = {t["name"]: t for t in summary["targets"]}
    assert summary["served"] == 2
    assert summary["expected_errors"] == 1
    assert summary["unexpected_errors"] == 1
    assert summary["kinds"]["chat"]["expected"] == 1
    assert summary["rss"]["max"] == 130_000_000
    assert not targets["unexpected errors == 0"]["met"]
    assert targets["every error answered 502/504 (or a stream error event)"]["detail"] == "1 of 2"
    assert targets["RSS end within 10% of start"]["met"]
    assert not summary["passed"]
