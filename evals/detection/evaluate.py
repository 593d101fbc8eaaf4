"""``nescio eval detect`` end to end: load, plan, run, summarise, write the run folder."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evals.detection.plan import Setting, plan
from evals.detection.run import TextField, run_jobs
from evals.detection.summarize import format_table, summarize
from evals.jsonl import write_rows
from evals.probes import Probe
from guards.concepts import ConceptList
from guards.encoder import Encoder
from guards.guard import DetectorKind
from guards.scorer import DEFAULT_SCORER, LogisticScorer

ITEMS_FILE = "detect_items.jsonl"
SUMMARY_FILE = "detect_summary.json"
TABLE_FILE = "detect_table.txt"


def evaluate_detection(
    concepts: ConceptList,
    probes: Sequence[Probe],
    settings: Sequence[Setting],
    encoder: Encoder,
    out_dir: Path,
    *,
    cache_dir: Path | None = None,
    text_field: TextField = "prompt",
    progress: bool = True,
    detector: DetectorKind = "embedding",
    scorer: LogisticScorer = DEFAULT_SCORER,
) -> dict[str, Any]:
    """Run every setting, write items/summary/table under ``out_dir``, return the summary."""
    started = time.perf_counter()
    jobs = plan(concepts, probes, settings)
    records, timing = run_jobs(
        concepts,
        jobs,
        encoder,
        cache_dir=cache_dir,
        text_field=text_field,
        progress=progress,
        detector=detector,
        scorer=scorer,
    )
    summary: dict[str, Any] = {
        "settings": summarize(records),
        "n_concepts": len(concepts.concepts),
        "n_probes": len(probes),
        "excluded_identical_to_examples": sum(job.excluded for job in jobs),
        "text_field": text_field,
        "detector": detector,
        "scorer": json.loads(scorer.to_json()) if detector == "learned" else None,
        "encoder": encoder.name,
        "timing": {**asdict(timing), "wall_s": time.perf_counter() - started},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_rows(out_dir / ITEMS_FILE, records)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    (out_dir / TABLE_FILE).write_text(format_table(summary["settings"]))
    return summary
