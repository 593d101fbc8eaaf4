"""`nescio compare`: serve every checkpoint with vLLM, put the proxy in front of the original
model (one row per policy) and of the best baseline, grade every system over HTTP, tabulate.

Rows, in order: the retain model (forget quality's reference), the original model, proxy(original)
for each policy, each weight-level baseline, and proxy(best baseline) with the best proxy policy
(`compare_table.pick_best` says what "best" means). Each row's raw per-item scores go to
`<out>/<row>.jsonl` and its summary to `<out>/<row>.summary.json`; a rerun reuses a summary whose
model folder, policy and probe counts are unchanged, so an interrupted comparison resumes.
`results.json` and `results.md` hold the table, `compare.png` its plot.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evals.baselines.checkpoint import read_run_info
from evals.baselines.compare_probes import ProbeSets, load_probe_sets, write_policy_concepts
from evals.baselines.compare_scoring import score_system
from evals.baselines.compare_table import (
    HIGHER_IS_BETTER,
    INFO_COLUMNS,
    markdown_table,
    pick_best,
    write_plot,
)
from evals.baselines.proxy_server import serve_proxy
from evals.baselines.settings import BaselineSettings
from evals.baselines.vllm_server import serve
from evals.metrics.likelihood import ks_forget_quality
from evals.runner.client import System
from guards.concepts import Policy

REFERENCE = "retain"


class CompareConfig(BaseModel):
    """What to compare and how much of each probe set to use."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path
    out: Path
    retain_model: Path
    checkpoints: dict[str, Path]
    original: str = "target"
    proxy_policies: list[Policy] = Field(default_factory=lambda: list(Policy))
    best_baseline: str | None = None
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
    proxy_port: int = 8766
    vllm_python: Path = Field(default_factory=lambda: BaselineSettings().vllm_python)

    @model_validator(mode="after")
    def _names_known(self) -> CompareConfig:
        if self.proxy_policies and self.original not in self.checkpoints:
            raise ValueError(
                f"the original model {self.original!r} must be one of the checkpoints "
                f"({', '.join(self.checkpoints)}) to put the proxy in front of it"
            )
        if self.best_baseline is not None and self.best_baseline not in self.checkpoints:
            raise ValueError(f"--best-baseline {self.best_baseline!r} is not a checkpoint")
        if REFERENCE in self.checkpoints:
            raise ValueError(f"{REFERENCE!r} is reserved for the retain model")
        return self


@dataclass(frozen=True)
class Row:
    """One system to grade: a served checkpoint, alone or behind the proxy with `policy`."""

    model: str
    model_dir: Path
    policy: Policy | None = None

    @property
    def name(self) -> str:
        return self.model if self.policy is None else f"proxy-{self.policy.value}-{self.model}"

    @property
    def label(self) -> str:
        return self.model if self.policy is None else f"proxy[{self.policy.value}]({self.model})"


class _Context:
    def __init__(self, config: CompareConfig) -> None:
        self.config = config
        concept_dir = config.out / "concepts"
        self.concepts, examples = write_policy_concepts(
            config.data_dir, config.forget, concept_dir, config.proxy_policies
        )
        self.probes: ProbeSets = load_probe_sets(
            config.data_dir,
            config.forget,
            config.retain_split,
            retain_authors=config.retain_authors,
            forget_items=config.forget_items,
            retain_items=config.retain_items,
            utility_items=config.utility_items,
            excluded_questions=examples,
        )

    def cache_key(self, row: Row) -> dict[str, Any]:
        return {
            "model_dir": str(row.model_dir),
            "policy": None if row.policy is None else row.policy.value,
            "probe_counts": self.probes.counts(),
        }

    def cached(self, row: Row) -> dict[str, Any] | None:
        path = self.config.out / f"{row.name}.summary.json"
        if not path.is_file():
            return None
        summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return summary if summary.get("key") == self.cache_key(row) else None

    def evaluate(self, rows: list[Row]) -> dict[str, dict[str, Any]]:
        """Grade rows that share one checkpoint: serve it once, start a proxy per policy."""
        done = {row.name: s for row in rows if (s := self.cached(row)) is not None}
        todo = [row for row in rows if row.name not in done]
        if not todo:
            return done
        config, model = self.config, todo[0].model
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(todo[0].model_dir)
        log = config.out / f"{model}.vllm.log"
        with serve(
            todo[0].model_dir, model, config.port, log, kind=config.server,
            cpu_python=config.vllm_python,
        ) as base_url:  # fmt: skip
            for row in todo:
                start = time.perf_counter()
                if row.policy is None:
                    summary, raw = self._score(row, base_url, tokenizer)
                else:
                    with serve_proxy(
                        base_url,
                        self.concepts[row.policy],
                        config.proxy_port,
                        config.out / f"{row.name}.proxy.log",
                        cache_dir=config.out / "index-cache",
                    ) as proxy_url:
                        summary, raw = self._score(row, proxy_url, tokenizer)
                summary["eval_wall_s"] = round(time.perf_counter() - start, 1)
                done[row.name] = self._save(row, summary, raw)
        return done

    def _score(
        self, row: Row, base_url: str, tokenizer: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        system = System(row.label, base_url.removesuffix("/v1"), model=row.model)
        return asyncio.run(
            score_system(
                system,
                tokenizer,
                self.probes,
                max_tokens=self.config.max_tokens,
                concurrency=self.config.concurrency,
            )
        )

    def _save(self, row: Row, summary: dict[str, Any], raw: list[dict[str, Any]]) -> dict[str, Any]:
        summary.update(name=row.label, key=self.cache_key(row), run=read_run_info(row.model_dir))
        with (self.config.out / f"{row.name}.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(item) + "\n" for item in raw)
        path = self.config.out / f"{row.name}.summary.json"
        path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        return summary


def run_compare(config: CompareConfig) -> list[dict[str, Any]]:
    """Grade every row; write `results.json` / `results.md` and return the table rows."""
    from tqdm import tqdm

    config.out.mkdir(parents=True, exist_ok=True)
    context = _Context(config)
    original_dir = config.checkpoints.get(config.original)
    groups: list[list[Row]] = [[Row(REFERENCE, config.retain_model)]]
    for name, path in config.checkpoints.items():
        policies = config.proxy_policies if name == config.original else []
        groups.append([Row(name, path), *(Row(name, path, p) for p in policies)])
    summaries: dict[str, dict[str, Any]] = {}
    for group in tqdm(groups, desc="compare", unit="checkpoint"):
        summaries.update(context.evaluate(group))
    reference = summaries[REFERENCE]["truth_ratios"]
    table = _table(summaries, [row for group in groups for row in group], reference)
    notes: list[str] = []
    if config.proxy_policies and original_dir is not None:
        table += _proxy_on_best(context, table, reference, notes)
    results = {
        "forget": config.forget,
        "higher_is_better": HIGHER_IS_BETTER,
        "rows": table,
        "notes": notes,
        "probe_counts": context.probes.counts(),
    }
    (config.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_plot(table, config.out / "compare.png")
    notes.append("![forget vs retain ROUGE-L, forget quality](compare.png)")
    text = markdown_table(table) + "".join(f"\n{note}\n" for note in notes)
    (config.out / "results.md").write_text(text, encoding="utf-8")
    print(text)
    return table


def _proxy_on_best(
    context: _Context, table: list[dict[str, Any]], reference: list[float], notes: list[str]
) -> list[dict[str, Any]]:
    """Grade proxy(best baseline) with the best proxy policy; the choices go into `notes`."""
    config = context.config
    by_label = {row["model"]: row for row in table}
    original_retain = by_label[config.original]["retain_rouge_l"]
    baselines = [
        row
        for name, row in by_label.items()
        if name in config.checkpoints and name != config.original
    ]
    best = config.best_baseline or pick_best(baselines, original_retain)
    proxies = [row for row in table if row.get("policy") is not None]
    best_proxy = pick_best(proxies, original_retain)
    if best is None or best_proxy is None:
        notes.append("No weight-level baseline to put the proxy in front of.")
        return []
    policy = Policy(next(r["policy"] for r in proxies if r["model"] == best_proxy))
    how = "given by --best-baseline" if config.best_baseline else "picked by the rule below"
    notes.append(
        f"Best baseline: {best} ({how}); best proxy policy: {policy.value}. Rule: the lowest "
        "forget ROUGE-L among rows keeping >= 90% of the original model's retain ROUGE-L, else "
        "the highest retain ROUGE-L."
    )
    row = Row(best, config.checkpoints[best], policy)
    return _table(context.evaluate([row]), [row], reference)


def _table(
    summaries: dict[str, dict[str, Any]], rows: list[Row], reference: list[float]
) -> list[dict[str, Any]]:
    """Table rows; forget quality compares each row's truth ratios with `reference` (retain's)."""
    table = []
    for row in rows:
        summary = summaries[row.name]
        run = summary.get("run", {})
        method = run.get("method", run.get("command", ""))
        table.append(
            {
                "model": row.label,
                "method": method if row.policy is None else f"proxy ({row.policy.value})",
                "policy": None if row.policy is None else row.policy.value,
                "train_wall_s": run.get("wall_s") if row.policy is None else None,
                **{key: summary[key] for key in HIGHER_IS_BETTER if key != "forget_quality"},
                "forget_quality": ks_forget_quality(summary["truth_ratios"], reference),
                **{key: summary[key] for key in INFO_COLUMNS},
                "eval_wall_s": summary["eval_wall_s"],
            }
        )
    return table
