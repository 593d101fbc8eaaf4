"""Cross-fitted evaluation of the learned detector: ``nescio eval detect --cross-fit K``.

The learned scorer is fitted on labelled probes, so it can only be measured on targets it was
not fitted on: the shipped one (fitted on RWKU 1-50) says nothing honest about 1-50. To report
on every target of a list, its concepts are cut into ``K`` folds, contiguous blocks in list
order (RWKU 1-100 with ``K = 2``: 1-50 and 51-100), and for each fold a scorer is fitted
(:func:`evals.detection.fit_scorer.fit_scorer`, the same recipe as ``fit_scorer``'s command) on
the probes of the other folds only; the fold's own probes are then checked with that scorer,
one concept at a time and, in the ``all`` setting, against a guard holding every concept of the
list.

A probe is reported in the fold of its first concept; a probe about no listed concept (an
untargeted utility question) in a fold drawn from a stable hash of its id. A fold's scorer is
fitted only on probes none of whose concepts (or, untargeted, whose hash fold) is in the fold,
so no record is scored by a scorer that saw its probe. ``utility_per_set`` caps each utility set
per fold, in the fold's report and training probes alike (RWKU's utility items come ordered by
target, so a cap over the whole list would leave the later folds none). ``match: centroid``
concepts are scored by their own thresholds, as always in the learned detector; the scorer is
for the others.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from evals.concept_sources import concept_ids_for
from evals.detection.fit_scorer import fit_scorer, unmet_budgets_warning
from evals.detection.plan import Job, Setting, plan
from evals.detection.run import TextField, Timing, run_jobs
from evals.detection.scorer_budgets import MAX_NEIGHBOR_FPR, MAX_UTILITY_FPR
from evals.errors import EvalError
from evals.probes import Probe, ProbeKind, first_per_set, stable_hash
from guards.concepts import ConceptList
from guards.memo_encoder import MemoEncoder


@dataclass(frozen=True, slots=True)
class CrossFit:
    """How many folds, the training false-positive budgets each fold's scorer is fitted to
    (``fit_scorer``'s ``--max-neighbor-fpr`` / ``--max-utility-fpr``), and the per-fold cap on
    each utility set (``None``: all)."""

    folds: int = 2
    max_neighbor_fpr: float = MAX_NEIGHBOR_FPR
    max_utility_fpr: float = MAX_UTILITY_FPR
    utility_per_set: int | None = None


@dataclass(frozen=True, slots=True)
class Fold:
    """The concepts of one fold, the probes reported with its scorer, and those it is fitted on."""

    concept_ids: tuple[str, ...]
    report: tuple[Probe, ...]
    training: tuple[Probe, ...]


def make_folds(
    concepts: ConceptList, probes: Sequence[Probe], k: int, utility_per_set: int | None = None
) -> list[Fold]:
    """Cut the list into ``k`` contiguous blocks and share out the probes (module docstring)."""
    ids = [c.id for c in concepts.concepts]
    if not 2 <= k <= len(ids):
        raise EvalError(f"--cross-fit needs 2 <= K <= the number of concepts ({len(ids)}), got {k}")
    fold_of = {cid: i * k // len(ids) for i, cid in enumerate(ids)}
    report: list[list[Probe]] = [[] for _ in range(k)]
    training: list[list[Probe]] = [[] for _ in range(k)]
    for probe in probes:
        touched = [fold_of[c] for c in concept_ids_for(probe) if c in fold_of]
        if not touched:
            touched = [_hash_fold(probe.id, k)]
        report[touched[0]].append(probe)
        for fold in set(range(k)) - set(touched):
            training[fold].append(probe)
    return [
        Fold(
            tuple(c for c in ids if fold_of[c] == f),
            tuple(_capped(report[f], utility_per_set)),
            tuple(_capped(training[f], utility_per_set)),
        )
        for f in range(k)
    ]


def _capped(probes: list[Probe], utility_per_set: int | None) -> list[Probe]:
    if utility_per_set is None:
        return probes
    return first_per_set(probes, ProbeKind.UTILITY, utility_per_set)


def cross_fitted_records(
    concepts: ConceptList,
    probes: Sequence[Probe],
    settings: Sequence[Setting],
    encoder: MemoEncoder,
    cross_fit: CrossFit,
    *,
    cache_dir: Path | None = None,
    text_field: TextField = "prompt",
    progress: bool = True,
) -> tuple[list[dict[str, Any]], Timing, list[Job], list[dict[str, Any]]]:
    """Every fold's records (each tagged with ``fold``), the summed timing, the jobs run and,
    per fold, its concepts, probe counts and fitted scorer."""
    records: list[dict[str, Any]] = []
    timings: list[Timing] = []
    jobs_run: list[Job] = []
    folds: list[dict[str, Any]] = []
    for number, fold in enumerate(
        make_folds(concepts, probes, cross_fit.folds, cross_fit.utility_per_set)
    ):
        others = [c.id for c in concepts.concepts if c.id not in fold.concept_ids]
        fitted = fit_scorer(
            concepts.subset(others),
            fold.training,
            encoder,
            max_neighbor_fpr=cross_fit.max_neighbor_fpr,
            max_utility_fpr=cross_fit.max_utility_fpr,
            fitted_on=f"cross-fit fold {number}: {len(others)} other concepts' probes",
            text_field=text_field,
            progress=progress,
        )
        if not fitted.budgets_met:
            warning = unmet_budgets_warning(cross_fit.max_neighbor_fpr, cross_fit.max_utility_fpr)
            print(f"fold {number}: {warning}", file=sys.stderr)
        jobs: list[Job] = []
        if Setting.SINGLE in settings:
            jobs += plan(concepts.subset(fold.concept_ids), fold.report, [Setting.SINGLE])
        if Setting.ALL in settings:
            jobs += plan(concepts, fold.report, [Setting.ALL])
        fold_records, timing = run_jobs(
            concepts,
            jobs,
            encoder,
            cache_dir=cache_dir,
            text_field=text_field,
            progress=progress,
            detector="learned",
            scorer=fitted.scorer,
        )
        records += [{**r, "fold": number} for r in fold_records]
        timings.append(timing)
        jobs_run += jobs
        folds.append(
            {
                "concepts": [fold.concept_ids[0], fold.concept_ids[-1]],
                "n_concepts": len(fold.concept_ids),
                "n_report_probes": len(fold.report),
                "n_training_probes": len(fold.training),
                "training_rows": fitted.rows_per_kind,
                "budgets_met": fitted.budgets_met,
                "scorer": json.loads(fitted.scorer.to_json()),
            }
        )
    total = Timing(*(sum(getattr(t, f.name) for t in timings) for f in fields(Timing)))
    return records, total, jobs_run, folds


def _hash_fold(probe_id: str, k: int) -> int:
    return stable_hash(f"{probe_id}#cross-fit") % k
