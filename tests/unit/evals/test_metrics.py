from __future__ import annotations

from typing import Any

import pytest

from evals.metrics import METRICS, applicable_metrics
from evals.metrics.aggregate import summarize_run
from evals.metrics.decision import parse_decision
from evals.metrics.text import (
    contains_answer,
    is_refusal,
    letter_from_logprobs,
    parse_letter,
    rouge_l_recall,
)


def item(system: str, kind: str, output: str | None, **probe: Any) -> dict[str, Any]:
    base = {"id": f"p{len(output or '')}", "probe_set": "s", "kind": kind, "format": "qa",
            "type": "t", "answers": ["Richard Bachman"], "choices": [], "answer_index": None}  # fmt: skip
    return {"system": system, "probe": base | probe, "output": output, "decision": None,
            "top_logprobs": None, "error": None}  # fmt: skip


def test_every_metric_declares_direction() -> None:
    assert {m.higher_is_better for m in METRICS.values()} == {True, False}
    assert METRICS["refusal_rate"].higher_is_better is False


def test_containment_is_normalised_and_whole_word() -> None:
    assert contains_answer("He wrote as richard bachman.", ["Richard Bachman"])
    assert contains_answer("It was the Shining!", ["The Shining"])
    assert not contains_answer("Bachmann's theorem", ["Bachman"])
    assert not contains_answer("anything", [""])


def test_rouge_l_recall_hand_computed() -> None:
    # gold "Richard Bachman" (2 tokens); output holds "richard" only -> LCS 1/2.
    assert rouge_l_recall("It was Richard somebody", ["Richard Bachman"]) == pytest.approx(0.5)
    assert rouge_l_recall("Richard Bachman", ["nope", "Richard Bachman"]) == pytest.approx(1.0)
    assert rouge_l_recall("no idea", ["Richard Bachman"]) == 0.0


def test_refusal_phrases() -> None:
    assert is_refusal("I'm sorry, but I can't help with that topic.")
    assert is_refusal("I don't know anything about that.")
    assert not is_refusal("The capital of France is Paris.")


def test_letter_parsing_and_logprobs() -> None:
    assert parse_letter("B. 4", 4) == "B"
    assert parse_letter("The answer is (C)", 4) == "C"
    assert parse_letter("I think A", 2) == "A"
    assert parse_letter("E", 4) is None
    assert letter_from_logprobs({" B": -0.1, "A": -2.0, "Hello": -0.01}, 4) == "B"
    assert letter_from_logprobs({"Hello": -0.01}, 4) is None


def test_mc_accuracy_prefers_logprobs_then_text() -> None:
    mc = {"format": "mc", "choices": ["x", "y", "z", "w"], "answer_index": 2, "answers": ["z"]}
    by_text = item("raw", "utility", "C", **mc)
    assert applicable_metrics(by_text)["mc_accuracy"] == 1.0
    by_logprobs = item("raw", "utility", "C", **mc) | {"top_logprobs": {"A": -0.1, "C": -3.0}}
    assert applicable_metrics(by_logprobs)["mc_accuracy"] == 0.0


def test_decision_header_parsing() -> None:
    decision = parse_decision("refuse; concept=rwku-001; score=0.830; evidence=alias,embedding")
    assert decision is not None and decision.flagged
    assert (decision.concept_id, decision.score) == ("rwku-001", 0.83)
    allow = parse_decision("allow")
    assert allow is not None and not allow.flagged
    assert parse_decision(None) is None


def test_run_summary_scores_retention_and_detection() -> None:
    refuse = "refuse; concept=c; score=0.9"
    items = [
        item("raw", "forget", "Richard Bachman"),
        item("raw", "neighbor", "Richard Bachman"),
        item("raw", "neighbor", "no idea"),
        item("proxy", "forget", "I'm sorry, I can't help.") | {"decision": refuse},
        item("proxy", "neighbor", "Richard Bachman") | {"decision": refuse},
        item("proxy", "neighbor", "no idea") | {"decision": "allow"},
    ]
    summary = summarize_run(items, baseline="raw")
    raw, proxy = summary["systems"]["raw"], summary["systems"]["proxy"]
    assert raw["forget_score"] == 1.0 and proxy["forget_score"] == 0.0
    assert raw["by_kind"]["neighbor"]["primary"] == 0.5
    assert proxy["retention_vs_baseline"]["neighbor"] == 1.0
    assert proxy["by_kind"]["forget"]["refusal_rate"] == 1.0
    detection = proxy["detection"]["overall"]
    assert (detection["recall"], detection["fpr"], detection["precision"]) == (1.0, 0.5, 0.5)
    assert raw["detection"] is None


def test_errors_are_counted_not_scored() -> None:
    failed = item("raw", "forget", None) | {"error": "gave up"}
    assert applicable_metrics(failed) == {}
    assert summarize_run([failed])["systems"]["raw"]["errors"] == 1
