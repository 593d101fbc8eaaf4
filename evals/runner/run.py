"""Run probes against several systems with bounded concurrency, appending results as they come.

A run folder holds ``run.json`` (what was asked: systems, probe specs, generation settings) and
``items.jsonl`` (one line per system and probe, written the moment the answer arrives). Started
again on the same folder, a run skips every (system, probe) pair already answered without error,
so an interrupted run resumes where it stopped; changed generation settings are refused rather
than mixed into one folder.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from evals.errors import RunDirError
from evals.jsonl import append_row, read_rows
from evals.probes import Probe, ProbeFormat
from evals.runner.client import Answer, GenerationConfig, RetryPolicy, System, SystemClient

ITEMS_FILE = "items.jsonl"
RUN_FILE = "run.json"


@dataclass(frozen=True, slots=True)
class RunStats:
    done_before: int
    answered: int
    errors: int


def completed_pairs(items_path: Path) -> set[tuple[str, str]]:
    """``(system, probe id)`` pairs already answered without error."""
    if not items_path.exists():
        return set()
    return {
        (row["system"], row["probe"]["id"])
        for _, row in read_rows(items_path)
        if row.get("error") is None
    }


def _check_run_file(out_dir: Path, config: dict[str, Any]) -> None:
    path = out_dir / RUN_FILE
    if path.exists():
        previous = json.loads(path.read_text())
        if previous.get("generation") != config["generation"]:
            raise RunDirError(
                f"{path}: generation settings differ from this run's; use a new --out folder"
            )
        config["systems"] = {**previous.get("systems", {}), **config["systems"]}
        config["probe_specs"] = sorted({*previous.get("probe_specs", []), *config["probe_specs"]})
    path.write_text(json.dumps(config, indent=2))


def run_probes(
    probes: Sequence[Probe],
    systems: Sequence[System],
    out_dir: Path,
    *,
    generation: GenerationConfig,
    probe_specs: Sequence[str] = (),
    concurrency: int = 4,
    timeout_s: float = 120.0,
    retry: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    progress: bool = True,
) -> RunStats:
    """Ask every system every probe not yet answered; returns what was done this time."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_run_file(
        out_dir,
        {
            "systems": {s.name: {"base_url": s.base_url, "model": s.model} for s in systems},
            "probe_specs": list(probe_specs),
            "generation": asdict(generation),
        },
    )
    items_path = out_dir / ITEMS_FILE
    done = completed_pairs(items_path)
    unique = list({p.id: p for p in probes}.values())
    todo = [(s, p) for s in systems for p in unique if (s.name, p.id) not in done]
    errors = asyncio.run(
        _ask_all(
            todo,
            items_path,
            generation=generation,
            concurrency=concurrency,
            timeout_s=timeout_s,
            retry=retry or RetryPolicy(),
            transport=transport,
            progress=progress,
        )
    )
    return RunStats(done_before=len(done), answered=len(todo), errors=errors)


async def _ask_all(
    todo: Sequence[tuple[System, Probe]],
    items_path: Path,
    *,
    generation: GenerationConfig,
    concurrency: int,
    timeout_s: float,
    retry: RetryPolicy,
    transport: httpx.AsyncBaseTransport | None,
    progress: bool,
) -> int:
    """Answers arrive in any order; each is appended to ``items_path`` as it comes."""
    semaphore = asyncio.Semaphore(concurrency)
    errors = 0
    async with httpx.AsyncClient(timeout=timeout_s, transport=transport) as http:
        clients = {s.name: SystemClient(s, generation, client=http, retry=retry) for s, _ in todo}

        async def one(system: System, probe: Probe) -> tuple[System, Probe, Answer]:
            async with semaphore:
                answer = await clients[system.name].ask(
                    probe.prompt, multiple_choice=probe.format is ProbeFormat.MC
                )
            return system, probe, answer

        tasks = [asyncio.create_task(one(s, p)) for s, p in todo]
        with tqdm(total=len(tasks), desc="asking", unit="item", disable=not progress) as bar:
            for next_done in asyncio.as_completed(tasks):
                system, probe, answer = await next_done
                errors += answer.error is not None
                append_row(items_path, item_record(system, probe, answer))
                bar.update(1)
    return errors


def item_record(system: System, probe: Probe, answer: Answer) -> dict[str, Any]:
    return {
        "system": system.name,
        "probe": probe.model_dump(mode="json"),
        "output": answer.text,
        "decision": answer.decision,
        "status": answer.status,
        "attempts": answer.attempts,
        "finish_reason": answer.finish_reason,
        "top_logprobs": answer.top_logprobs,
        "error": answer.error,
    }


def load_items(out_dir: Path) -> list[dict[str, Any]]:
    """The latest record per (system, probe): a successful retry replaces an earlier error."""
    path = out_dir / ITEMS_FILE
    if not path.exists():
        raise RunDirError(f"{out_dir}: no {ITEMS_FILE}; run `nescio eval run --out {out_dir}`")
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for _, row in read_rows(path):
        key = (row["system"], row["probe"]["id"])
        if key not in latest or row.get("error") is None:
            latest[key] = row
    return list(latest.values())
