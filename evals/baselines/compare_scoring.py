"""Grade one system (a vLLM-served checkpoint or the proxy in front of one) on the probe sets.

Everything goes through `evals.runner.client.SystemClient` (retries, the decision header) and the
metrics in `evals.metrics` (ROUGE-L recall, likelihood), so a model and a proxy are graded by the
same code over the same HTTP API. Per system it produces:

- forget / retain ROUGE-L recall of greedy chat answers against the original answer;
- TOFU's truth ratio on the forget set from prompt log-probabilities, with the fraction of forget
  items the system gave log-probabilities for at all (a refusing proxy gives none, so the
  attacker learns nothing and forget quality is not defined);
- real-authors / world-facts accuracy by likelihood (TOFU's way; an option the system withheld
  counts as wrong) and the ROUGE-L recall of the generated answer (TOFU's second utility signal,
  more informative than likelihood for a 135M model);
- how often the guard flagged forget and retain items (proxies only; from the decision header).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx

from evals.baselines.compare_probes import ProbeSets
from evals.baselines.errors import ServerError
from evals.baselines.formatting import chat_prompt
from evals.metrics.decision import parse_decision
from evals.metrics.likelihood import AnswerLogprob, choice_correct, truth_ratio
from evals.metrics.text import rouge_l_recall
from evals.probes import Probe
from evals.runner.client import Answer, GenerationConfig, System, SystemClient

T = TypeVar("T")
R = TypeVar("R")


async def gather_limited(
    items: Sequence[T], worker: Callable[[T], Awaitable[R]], concurrency: int
) -> list[R]:
    """Run `worker` over `items` with at most `concurrency` in flight, keeping the order."""
    semaphore = asyncio.Semaphore(concurrency)

    async def run(item: T) -> R:
        async with semaphore:
            return await worker(item)

    return list(await asyncio.gather(*(run(item) for item in items)))


def _checked(system: System, answer: Answer) -> Answer:
    if answer.error is not None:
        raise ServerError(f"{system.name}: {answer.error}")
    return answer


def _flagged(answer: Answer) -> bool | None:
    decision = parse_decision(answer.decision)
    return None if decision is None else decision.flagged


def _wrong_answers(probe: Probe) -> list[str]:
    return [str(w) for w in probe.metadata.get("perturbed_answers", [])]


async def score_system(
    system: System,
    tokenizer: Any,
    probes: ProbeSets,
    *,
    max_tokens: int,
    concurrency: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """All probe sets against one system: its summary and the raw per-item records."""
    generation = GenerationConfig(max_tokens=max_tokens, temperature=0.0, mode="chat")
    async with httpx.AsyncClient(timeout=600.0, transport=transport) as http:
        client = SystemClient(system, generation, client=http)

        async def logprob(prompt: str, answer: str) -> AnswerLogprob | None:
            return _checked(system, await client.score_answer(prompt, answer)).answer_logprob

        async def generated(probe: Probe) -> dict[str, Any]:
            answer = _checked(system, await client.ask(probe.prompt))
            text = answer.text or ""
            return {
                "question": probe.query,
                "output": text,
                "rouge_l": rouge_l_recall(text, [probe.answers[0]]),
                "flagged": _flagged(answer),
            }

        async def forget_ratio(probe: Probe) -> float | None:
            prompt = chat_prompt(tokenizer, probe.prompt)
            paraphrase = await logprob(prompt, probe.answers[-1])
            wrong = [await logprob(prompt, w) for w in _wrong_answers(probe)]
            if paraphrase is None or any(w is None for w in wrong):
                return None
            return truth_ratio(paraphrase, [w for w in wrong if w is not None])

        async def choice(probe: Probe) -> bool:
            prompt = chat_prompt(tokenizer, probe.prompt)
            right = await logprob(prompt, probe.answers[0])
            wrong = [await logprob(prompt, w) for w in _wrong_answers(probe)]
            if right is None or any(w is None for w in wrong):
                return False
            return choice_correct(right, [w for w in wrong if w is not None])

        forget = await gather_limited(probes.forget, generated, concurrency)
        retain = await gather_limited(probes.retain, generated, concurrency)
        ratios = await gather_limited(probes.forget, forget_ratio, concurrency)
        real = await gather_limited(probes.real_authors, choice, concurrency)
        world = await gather_limited(probes.world_facts, choice, concurrency)
        real_text = await gather_limited(probes.real_authors, generated, concurrency)
        world_text = await gather_limited(probes.world_facts, generated, concurrency)
    known = [r for r in ratios if r is not None]
    summary = {
        "forget_rouge_l": _mean([row["rouge_l"] for row in forget]),
        "retain_rouge_l": _mean([row["rouge_l"] for row in retain]),
        "real_authors_acc": _mean([float(c) for c in real]),
        "world_facts_acc": _mean([float(c) for c in world]),
        "real_authors_rouge_l": _mean([row["rouge_l"] for row in real_text]),
        "world_facts_rouge_l": _mean([row["rouge_l"] for row in world_text]),
        "forget_truth_ratio": _mean(known) if known else None,
        "logprob_coverage": len(known) / len(ratios) if ratios else None,
        "flagged_forget": _flag_rate(forget),
        "flagged_retain": _flag_rate(retain),
        "truth_ratios": known,
    }
    raw = [
        {"set": "forget", **row, "truth_ratio": r} for row, r in zip(forget, ratios, strict=True)
    ]
    raw += [{"set": "retain", **row} for row in retain]
    for name, rows, correct in (
        ("real_authors", real_text, real),
        ("world_facts", world_text, world),
    ):
        raw += [{"set": name, **row, "correct": c} for row, c in zip(rows, correct, strict=True)]
    return summary, raw


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _flag_rate(rows: list[dict[str, Any]]) -> float | None:
    flags = [row["flagged"] for row in rows if row["flagged"] is not None]
    return sum(flags) / len(flags) if flags else None
