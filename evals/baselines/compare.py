"""`nescio compare`: serve every checkpoint with vLLM, probe it over HTTP, tabulate the results.

Each model's raw per-item scores go to `<out>/<name>.jsonl` and its summary to
`<out>/<name>.summary.json`; a rerun reuses a summary whose model folder is unchanged, so an
interrupted comparison resumes where it stopped. `results.json` and `results.md` hold the table.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from evals.baselines.checkpoint import read_run_info
from evals.baselines.data import QAExample, last_authors, load_qa_jsonl, tofu_path
from evals.baselines.formatting import chat_prompt
from evals.baselines.probes import PerturbedQA, load_perturbed
from evals.baselines.scoring import (
    answer_logprob,
    choice_correct,
    gather_limited,
    generate,
    ks_forget_quality,
    truth_ratio,
)
from evals.baselines.settings import BaselineSettings
from evals.baselines.vllm_server import serve
from evals.metrics.text import rouge_l_recall

REFERENCE = "retain"
HIGHER_IS_BETTER = {
    "forget_rouge_l": False,
    "retain_rouge_l": True,
    "real_authors_acc": True,
    "world_facts_acc": True,
    "forget_truth_ratio": False,
    "forget_quality": True,
}


class CompareConfig(BaseModel):
    """What to compare and how much of each probe set to use."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path
    out: Path
    retain_model: Path
    checkpoints: dict[str, Path]
    forget: str = "forget01"
    retain_split: str = "retain99"
    retain_authors: int | None = None
    forget_items: int | None = Field(default=None, gt=0)
    retain_items: int = Field(default=40, gt=0)
    utility_items: int = Field(default=50, gt=0)
    max_tokens: int = Field(default=64, gt=0)
    concurrency: int = Field(default=8, gt=0)
    server: str = "auto"
    port: int = 8765
    vllm_python: Path = Field(default_factory=lambda: BaselineSettings().vllm_python)


@dataclass(frozen=True)
class ProbeSets:
    forget: list[PerturbedQA]
    retain: list[QAExample]
    real_authors: list[PerturbedQA]
    world_facts: list[PerturbedQA]

    @classmethod
    def load(cls, config: CompareConfig) -> ProbeSets:
        tofu = config.data_dir
        retain = last_authors(
            load_qa_jsonl(tofu_path(tofu, config.retain_split)), config.retain_authors
        )
        n = config.utility_items
        forget = load_perturbed(tofu_path(tofu, f"{config.forget}_perturbed"), need_paraphrase=True)
        return cls(
            forget[: config.forget_items],
            retain[: config.retain_items],
            load_perturbed(tofu_path(tofu, "real_authors_perturbed"), need_paraphrase=False)[:n],
            load_perturbed(tofu_path(tofu, "world_facts_perturbed"), need_paraphrase=False)[:n],
        )


async def score_model(
    base_url: str, model: str, tokenizer: Any, probes: ProbeSets, config: CompareConfig
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """All probes against one served model: a summary and the raw per-item records."""
    limit = config.concurrency
    async with httpx.AsyncClient(base_url=base_url, timeout=600.0) as client:

        async def rouge(item: QAExample | PerturbedQA) -> dict[str, Any]:
            text = await generate(client, model, item.question, config.max_tokens)
            return {
                "question": item.question,
                "output": text,
                "rouge_l": rouge_l_recall(text, [item.answer]),
            }

        async def forget_ratio(item: PerturbedQA) -> float:
            prompt = chat_prompt(tokenizer, item.question)
            paraphrase = await answer_logprob(client, model, prompt, item.paraphrased_answer or "")
            wrong = [await answer_logprob(client, model, prompt, w) for w in item.perturbed_answers]
            return truth_ratio(paraphrase, wrong)

        async def choice(item: PerturbedQA) -> bool:
            prompt = chat_prompt(tokenizer, item.question)
            right = await answer_logprob(client, model, prompt, item.answer)
            wrong = [await answer_logprob(client, model, prompt, w) for w in item.perturbed_answers]
            return choice_correct(right, wrong)

        forget = await gather_limited(probes.forget, rouge, limit)
        retain = await gather_limited(probes.retain, rouge, limit)
        ratios = await gather_limited(probes.forget, forget_ratio, limit)
        real = await gather_limited(probes.real_authors, choice, limit)
        world = await gather_limited(probes.world_facts, choice, limit)
    raw = [
        {"set": "forget", **row, "truth_ratio": r} for row, r in zip(forget, ratios, strict=True)
    ]
    raw += [{"set": "retain", **row} for row in retain]
    raw += [
        {"set": "real_authors", "question": q.question, "correct": c}
        for q, c in zip(probes.real_authors, real, strict=True)
    ]
    raw += [
        {"set": "world_facts", "question": q.question, "correct": c}
        for q, c in zip(probes.world_facts, world, strict=True)
    ]
    summary = {
        "forget_rouge_l": _mean([row["rouge_l"] for row in forget]),
        "retain_rouge_l": _mean([row["rouge_l"] for row in retain]),
        "real_authors_acc": _mean([float(c) for c in real]),
        "world_facts_acc": _mean([float(c) for c in world]),
        "forget_truth_ratio": _mean(ratios),
        "truth_ratios": ratios,
    }
    return summary, raw


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _evaluate(
    name: str, model_dir: Path, probes: ProbeSets, config: CompareConfig
) -> dict[str, Any]:
    from transformers import AutoTokenizer

    summary_path = config.out / f"{name}.summary.json"
    if summary_path.is_file():
        cached: dict[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
        if cached.get("model_dir") == str(model_dir):
            return cached
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    start = time.perf_counter()
    log = config.out / f"{name}.vllm.log"
    with serve(
        model_dir, name, config.port, log, kind=config.server, cpu_python=config.vllm_python
    ) as base_url:
        summary, raw = asyncio.run(score_model(base_url, name, tokenizer, probes, config))
    summary.update(
        name=name, model_dir=str(model_dir), eval_wall_s=round(time.perf_counter() - start, 1)
    )
    summary["run"] = read_run_info(model_dir)
    with (config.out / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in raw)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def run_compare(config: CompareConfig) -> list[dict[str, Any]]:
    """Evaluate the retain model and every checkpoint; write and return the results table."""
    from tqdm import tqdm

    config.out.mkdir(parents=True, exist_ok=True)
    probes = ProbeSets.load(config)
    models = {REFERENCE: config.retain_model, **config.checkpoints}
    summaries = {
        name: _evaluate(name, path, probes, config)
        for name, path in tqdm(models.items(), desc="compare")
    }
    reference = summaries[REFERENCE]["truth_ratios"]
    rows = []
    for name, summary in summaries.items():
        run = summary.get("run", {})
        rows.append(
            {
                "model": name,
                "method": run.get("method", run.get("command", "")),
                "train_wall_s": run.get("wall_s"),
                **{key: summary[key] for key in HIGHER_IS_BETTER if key != "forget_quality"},
                "forget_quality": ks_forget_quality(summary["truth_ratios"], reference),
                "eval_wall_s": summary["eval_wall_s"],
            }
        )
    results = {
        "forget": config.forget,
        "higher_is_better": HIGHER_IS_BETTER,
        "rows": rows,
        "probe_counts": {
            "forget": len(probes.forget),
            "retain": len(probes.retain),
            "real_authors": len(probes.real_authors),
            "world_facts": len(probes.world_facts),
        },
    }
    (config.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (config.out / "results.md").write_text(markdown_table(rows), encoding="utf-8")
    print(markdown_table(rows))
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (arrows say which direction is better)."""
    columns = ["model", "method", "train_wall_s", *HIGHER_IS_BETTER, "eval_wall_s"]
    arrows = {key: (" ↑" if up else " ↓") for key, up in HIGHER_IS_BETTER.items()}
    header = "| " + " | ".join(c + arrows.get(c, "") for c in columns) + " |"
    lines = [header, "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row.get(c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:.3f}"
    return "" if value is None else str(value)
