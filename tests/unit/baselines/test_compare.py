"""`nescio compare` pieces without vLLM: probe sets, per-policy concept files, grading a fake
model and a fake refusing proxy over HTTP, the best-row rule and the table."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from evals.baselines.compare import CompareConfig
from evals.baselines.compare_probes import ProbeSets, load_probe_sets, write_policy_concepts
from evals.baselines.compare_scoring import score_system
from evals.baselines.compare_table import markdown_table, pick_best, write_plot
from evals.runner.client import System
from guards.concepts import Policy, load_concepts
from proxy.cli import main

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "evals" / "made-up-benchmarks"
RETAIN_AUTHOR = "Ilse Varga-Moreau"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A TOFU folder: the made-up forget01 author, a retain author, two utility sets."""
    tofu = tmp_path / "data" / "tofu"
    shutil.copytree(FIXTURE / "tofu-fixture", tofu)
    forget = [json.loads(line) for line in (tofu / "forget01.jsonl").read_text().splitlines()]
    perturbed = [
        row | {"paraphrased_answer": "In other words: " + row["answer"],
               "perturbed_answer": ["Wrong one.", "Wrong two."]}
        for row in forget
    ]  # fmt: skip
    write_jsonl(tofu / "forget01_perturbed.jsonl", perturbed)
    retain = [
        {"question": f"Question {i} about {RETAIN_AUTHOR}?", "answer": f"{RETAIN_AUTHOR} fact {i}."}
        for i in range(4)
    ]
    write_jsonl(tofu / "retain99.jsonl", retain)
    for name, answer in (("real_authors", "Jane Austen"), ("world_facts", "Paris")):
        row = {"question": f"{name} question?", "answer": answer, "perturbed_answer": ["A", "B"]}
        write_jsonl(tofu / f"{name}_perturbed.jsonl", [row, row])
    return tmp_path / "data"


def probe_sets(data_dir: Path, excluded: set[str]) -> ProbeSets:
    return load_probe_sets(
        data_dir, "forget01", "retain99", retain_authors=None, forget_items=None,
        retain_items=3, utility_items=2, excluded_questions=excluded,
    )  # fmt: skip


def test_concept_files_per_policy_and_their_examples_leave_the_forget_set(
    data_dir: Path, tmp_path: Path
) -> None:
    paths, examples = write_policy_concepts(
        data_dir, "forget01", tmp_path / "concepts", [Policy.REFUSE, Policy.ICUL]
    )
    assert set(paths) == {Policy.REFUSE, Policy.ICUL}
    assert load_concepts(paths[Policy.ICUL]).defaults.policy is Policy.ICUL
    concepts = load_concepts(paths[Policy.REFUSE]).concepts
    assert "Corentin Marlowe-Fabre" in {c.name for c in concepts}
    assert examples == {question for c in concepts for question in c.examples}
    probes = probe_sets(data_dir, examples)
    assert examples and not examples & {p.query for p in probes.forget}
    assert len(probes.forget) == 8 - len(examples)
    assert probes.counts() == {"forget": len(probes.forget), "retain": 3,
                               "real_authors": 2, "world_facts": 2}  # fmt: skip


class FakeTokenizer:
    def apply_chat_template(self, messages: list[dict[str, str]], **_: Any) -> str:
        return f"<user>{messages[0]['content']}</user><assistant>"


def fake_server(forbidden: set[str]) -> httpx.MockTransport:
    """A model that likes answers starting 'In other words' or naming the right utility answer;
    it acts like a refusing proxy on any prompt holding one of the `forbidden` questions."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        text = body["prompt"] if "prompt" in body else body["messages"][0]["content"]
        if any(question in text for question in forbidden):
            refusal = {"message": {"content": "I can't help."}, "text": "I can't help."}
            headers = {"x-nescio-decision": "refuse; concept=x"}
            return httpx.Response(200, json={"choices": [refusal]}, headers=headers)
        headers = {"x-nescio-decision": "allow"} if forbidden else {}
        if "messages" in body:
            reply = {"message": {"content": "Paris, said Jane Austen. " + RETAIN_AUTHOR + " fact"}}
            return httpx.Response(200, json={"choices": [reply]}, headers=headers)
        good = any(w in text for w in ("In other words", "Paris", "Jane Austen"))
        value = -0.1 if good else -2.0
        full = text + "X"
        logprobs = {
            "tokens": list(full),
            "token_logprobs": [None] + [value] * len(text),
            "text_offset": list(range(len(full))),
        }
        usage = {"prompt_tokens": len(text)}
        choice = {"text": full, "logprobs": logprobs}
        return httpx.Response(200, json={"choices": [choice], "usage": usage}, headers=headers)

    return httpx.MockTransport(handler)


def grade(data_dir: Path, *, refuse_forget: bool) -> dict[str, Any]:
    probes = probe_sets(data_dir, set())
    forbidden = {p.query for p in probes.forget} if refuse_forget else set()
    summary, raw = asyncio.run(
        score_system(
            System("s", "http://test", model="m"), FakeTokenizer(), probes,
            max_tokens=8, concurrency=2, transport=fake_server(forbidden),
        )
    )  # fmt: skip
    assert len(raw) == sum(probes.counts().values())
    return summary


def test_a_model_is_graded_on_every_set(data_dir: Path) -> None:
    summary = grade(data_dir, refuse_forget=False)
    assert summary["logprob_coverage"] == 1.0 and summary["forget_truth_ratio"] > 1.0
    assert summary["real_authors_acc"] == 1.0 and summary["world_facts_acc"] == 1.0
    assert summary["world_facts_rouge_l"] == 1.0 and summary["retain_rouge_l"] > 0.5
    assert summary["flagged_forget"] is None  # no guard, no header


def test_a_refusing_proxy_gives_no_logprobs_and_its_flags_are_counted(data_dir: Path) -> None:
    summary = grade(data_dir, refuse_forget=True)
    assert summary["logprob_coverage"] == 0.0 and summary["forget_truth_ratio"] is None
    assert summary["truth_ratios"] == [] and summary["forget_rouge_l"] < 0.2
    assert summary["flagged_forget"] == 1.0 and summary["flagged_retain"] == 0.0
    assert summary["world_facts_acc"] == 1.0


def test_best_row_keeps_retain_and_forgets_most() -> None:
    rows = [
        {"model": "ga", "forget_rouge_l": 0.1, "retain_rouge_l": 0.5},
        {"model": "graddiff", "forget_rouge_l": 0.4, "retain_rouge_l": 0.85},
        {"model": "npo", "forget_rouge_l": 0.3, "retain_rouge_l": 0.9},
    ]
    assert pick_best(rows, original_retain=0.9) == "npo"
    assert pick_best(rows[:1], original_retain=0.9) == "ga"  # nobody keeps 90%: best retain
    assert pick_best([], original_retain=0.9) is None


def test_markdown_table_marks_directions_and_missing_values() -> None:
    row = {"model": "proxy[refuse](target)", "method": "proxy (refuse)", "forget_quality": None,
           "forget_rouge_l": 0.015, "logprob_coverage": 0.0}  # fmt: skip
    table = markdown_table([row])
    assert "forget_rouge_l ↓" in table and "forget_quality ↑" in table
    assert "| proxy[refuse](target) | proxy (refuse) |" in table and "n/a" in table


def test_config_needs_the_original_among_the_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="original model 'target'"):
        CompareConfig(data_dir=tmp_path, out=tmp_path, retain_model=tmp_path,
                      checkpoints={"npo": tmp_path})  # fmt: skip
    config = CompareConfig(data_dir=tmp_path, out=tmp_path, retain_model=tmp_path,
                           checkpoints={"npo": tmp_path}, proxy_policies=[])  # fmt: skip
    assert config.original == "target"


def test_cli_reports_a_bad_compare_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compare", "--retain-model", str(tmp_path), "--checkpoint", f"npo={tmp_path}",
            "--out", str(tmp_path), "--data-dir", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    assert "must be one of the checkpoints" in capsys.readouterr().err


def test_plot_is_written_and_skips_rows_without_forget_quality(tmp_path: Path) -> None:
    rows = [
        {"model": "target", "forget_rouge_l": 0.8, "retain_rouge_l": 0.8, "forget_quality": 1e-4},
        {"model": "proxy[refuse](target)", "policy": "refuse", "forget_rouge_l": 0.02,
         "retain_rouge_l": 0.8, "forget_quality": None},
    ]  # fmt: skip
    write_plot(rows, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").read_bytes().startswith(b"\x89PNG")
