"""``nescio eval detect`` end to end: load, plan, run, summarise, write the run folder."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evals.detection.cross_fit import CrossFit, cross_fitted_records
from evals.detection.curve import CURVE_FILE, operating_curve, plot_curve
from evals.detection.plan import Setting, plan
from evals.detection.run import TextField, run_jobs
from evals.detection.split_calibration import (
    CALIBRATED_FILE,
    SplitCalibration,
    calibrated_list,
    fit_on_split,
)
from evals.detection.summarize import format_table, summarize
from evals.errors import EvalError
from evals.jsonl import write_rows
from evals.probes import Probe
from guards.concepts import ConceptList
from guards.encoder import Encoder
from guards.guard import DetectorKind
from guards.memo_encoder import memoized
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
    calibrate: SplitCalibration | None = None,
    cross_fit: CrossFit | None = None,
    multilingual: bool = True,
) -> dict[str, Any]:
    """Run every setting, write items/summary/table (and the operating curve of the single
    setting, :mod:`evals.detection.curve`) under ``out_dir``, return the summary.

    With ``calibrate``, per-concept thresholds are first fitted on the calibration part of the
    probes and everything is reported on the other part (:mod:`evals.detection.split_calibration`);
    the calibrated concept list is written to ``out_dir`` too. With ``cross_fit`` (learned
    detector only), ``scorer`` is not used: each fold of concepts is checked with a scorer fitted
    on the other folds' probes (:mod:`evals.detection.cross_fit`). ``multilingual``: see
    :meth:`guards.guard.Guard.build` (the main path only; calibration and cross-fitting study
    RWKU people, in English).
    """
    started = time.perf_counter()
    encoder = memoized(encoder, cache_dir)  # one vector store, loaded once for every step
    calibration: dict[str, Any] | None = None
    if cross_fit is not None and (detector != "learned" or calibrate is not None):
        raise EvalError(
            "--cross-fit fits the learned detector's scorer: use it with --detector learned "
            "and without --calibrate-split"
        )
    if calibrate is not None:
        if detector != "embedding" and not any(c.match == "centroid" for c in concepts.concepts):
            raise EvalError(
                "--calibrate-split fits per-concept thresholds: the learned detector has them "
                "only for 'match: centroid' concepts, and this list has none"
            )
        concepts, probes, calibration = fit_on_split(
            concepts, probes, calibrate, encoder, cache_dir, text_field, progress, detector, scorer
        )
    folds: list[dict[str, Any]] | None = None
    if cross_fit is not None:
        records, timing, jobs, folds = cross_fitted_records(
            concepts,
            probes,
            settings,
            encoder,
            cross_fit,
            cache_dir=cache_dir,
            text_field=text_field,
            progress=progress,
        )
    else:
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
            multilingual=multilingual,
        )
    summary: dict[str, Any] = {
        "settings": summarize(records),
        "n_concepts": len(concepts.concepts),
        "n_probes": len(probes),
        "calibration": calibration,
        "curve": operating_curve(records),
        "excluded_identical_to_examples": sum(job.excluded for job in jobs),
        "text_field": text_field,
        "detector": detector,
        "scorer": json.loads(scorer.to_json())
        if detector == "learned" and cross_fit is None
        else None,
        "cross_fit": None if cross_fit is None else {**asdict(cross_fit), "folds": folds},
        "encoder": encoder.name,
        "timing": {**asdict(timing), "wall_s": time.perf_counter() - started},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_rows(out_dir / ITEMS_FILE, records)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    (out_dir / TABLE_FILE).write_text(format_table(summary["settings"]))
    if summary["curve"] is not None:
        title = f"{detector} detector, single setting"
        if cross_fit is not None:
            title += f", {cross_fit.folds} cross-fitted scorers"
        plot_curve(summary["curve"], out_dir / CURVE_FILE, title)
    if calibration is not None:
        fitted = calibrated_list(
            concepts,
            calibration["thresholds"],
            records,
            encoder.name,
            calibration["split"],
            out_dir,
        )
        (out_dir / CALIBRATED_FILE).write_text(fitted.to_yaml(), encoding="utf-8")
    return summary
