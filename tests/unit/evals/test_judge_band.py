"""The ambiguous-band judge study: which probes it asks about, how it reads the answer."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from evals.detection.judge_band import auc, band_records, main, run, yes_no_score
from evals.jsonl import write_rows
from guards.concepts import Concept, ConceptList


def _record(pid: str, probe_set: str, kind: str, score: float, flagged: bool) -> dict[str, Any]:
    return {
        "setting": "all", "probe_id": pid, "probe_set": probe_set, "kind": kind,
        "nearest_concept": "rwku-001", "score": score, "threshold": 0.6, "flagged": flagged,
    }  # fmt: skip


def _choice(yes: float, no: float) -> dict[str, Any]:
    tops = [{"token": " Yes", "logprob": math.log(yes)}, {"token": "No", "logprob": math.log(no)}]
    return {"logprobs": {"content": [{"token": "Yes", "top_logprobs": tops}]}}


def test_yes_no_score_reads_the_first_token_logprobs() -> None:
    assert yes_no_score(_choice(0.8, 0.2)) == pytest.approx(math.log(4))
    assert yes_no_score(_choice(0.1, 0.9)) < 0


def test_auc_is_the_chance_a_positive_outranks_a_negative() -> None:
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auc([0.5], [0.5]) == 0.5
    assert auc([0.1], [0.9, 0.0]) == 0.5


def test_the_band_is_the_records_near_their_threshold() -> None:
    records = [
        _record("a", "s", "forget", 0.62, True),
        _record("b", "s", "forget", 0.95, True),
        {**_record("c", "s", "neighbor", 0.58, False), "setting": "single"},
    ]
    assert [r["probe_id"] for r in band_records(records, "all", 0.05)] == ["a"]


def test_run_asks_about_band_probes_only_and_compares_both_stages(
    tmp_path: Path, data_dir: Path
) -> None:
    concepts = ConceptList(concepts=[Concept(id="rwku-001", name="Elara Voss")])
    (tmp_path / "concepts.yaml").write_text(concepts.to_yaml())
    write_rows(
        tmp_path / "detect_items.jsonl",
        [
            _record("rwku:forget_level1#1", "rwku:forget_level1", "forget", 0.58, False),
            _record("rwku:neighbor_level1#1", "rwku:neighbor_level1", "neighbor", 0.62, True),
            _record("rwku:forget_level1#2", "rwku:forget_level1", "forget", 0.99, True),
        ],
    )
    asked: list[dict[str, Any]] = []

    def judge(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        asked.append(body)
        about_target = "coral reefs" in body["messages"][0]["content"]  # the in-scope probe
        choice = _choice(0.9, 0.1) if about_target else _choice(0.2, 0.8)
        return httpx.Response(200, json={"choices": [choice]})

    args = argparse.Namespace(
        run=tmp_path, setting="all", band=0.05, per_class=10, seed=0, data_dir=data_dir,
        model="judge",
    )  # fmt: skip
    with httpx.Client(base_url="http://judge", transport=httpx.MockTransport(judge)) as client:
        summary = run(args, client)
    assert len(asked) == 2 and all(b["max_tokens"] == 1 and b["logprobs"] for b in asked)
    assert summary["band_share_of_checks"] == pytest.approx(2 / 3)
    assert (summary["first_stage_recall"], summary["first_stage_fpr"]) == (0.0, 1.0)
    assert (summary["judge_recall"], summary["judge_fpr"], summary["judge_auc"]) == (1, 0, 1)


def test_an_unreachable_judge_or_an_empty_run_is_a_clear_error(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    concepts = ConceptList(concepts=[Concept(id="rwku-001", name="Elara Voss")])
    (tmp_path / "concepts.yaml").write_text(concepts.to_yaml())
    write_rows(tmp_path / "detect_items.jsonl", [])
    nowhere = ["--base-url", "http://127.0.0.1:9", "--data-dir", str(data_dir)]
    assert main([str(tmp_path), *nowhere]) == 2
    assert "no 'all' setting" in capsys.readouterr().err
    probe = _record("rwku:forget_level1#1", "rwku:forget_level1", "forget", 0.6, True)
    write_rows(tmp_path / "detect_items.jsonl", [probe])
    assert main([str(tmp_path), *nowhere]) == 2
    assert "cannot reach the judge at http://127.0.0.1:9" in capsys.readouterr().err
