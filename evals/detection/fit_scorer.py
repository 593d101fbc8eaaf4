"""Fit the learned detector's logistic scorer on RWKU targets of a *training* split.

Usage: ``python -m evals.detection.fit_scorer --train 1-50 --out scorer.json``

All training targets are guarded at once (the hardest setting). A (probe, concept) pair whose
text names the concept is decisive in the detector and left out of training. Rows: for every
forget probe,
its own concept (positive) and the most similar other concept (negative); for every neighbour
probe, its own concept (negative); for every utility probe held only by training targets, the
concept it scores highest on (negative). The probability threshold is the lowest one whose
training false-positive rates stay within ``--max-neighbor-fpr`` and ``--max-utility-fpr``.
Report detection numbers on the other targets only: they never shaped the weights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evals.concept_sources import write_concepts
from evals.concept_sources.base import concept_ids_for
from evals.concept_sources.rwku import build
from evals.detection.run import TextField, probe_text
from evals.detection.scorer_budgets import MAX_NEIGHBOR_FPR, MAX_UTILITY_FPR, add_budget_options
from evals.loaders import load_probes, parse_targets
from evals.presets import CORPUS_DIR
from evals.probes import Probe, ProbeKind, first_per_set
from guards.concepts import ConceptList
from guards.encoder import DEFAULT_ENCODER, load_encoder
from guards.guard import build_index
from guards.learned_detector import LearnedDetector, question_segments
from guards.memo_encoder import DEFAULT_CACHE, MemoEncoder, vector_store
from guards.scorer import FEATURES, LogisticScorer, Matrix, fit_logistic

PLACEHOLDER = LogisticScorer(tuple(0.0 for _ in FEATURES), 0.0)


@dataclass(frozen=True, slots=True)
class TrainingRows:
    features: Matrix
    labels: np.ndarray
    kinds: np.ndarray
    probe_rows: np.ndarray
    concepts: np.ndarray


def training_rows(
    detector: LearnedDetector,
    ids: list[str],
    probes: Sequence[Probe],
    text_field: TextField = "prompt",
    *,
    progress: bool = True,
) -> TrainingRows:
    """Feature rows as described in the module docstring, tagged with kind, probe number and
    concept column."""
    column = {cid: i for i, cid in enumerate(ids)}
    rows: list[np.ndarray] = []
    labels: list[bool] = []
    kinds: list[str] = []
    owners: list[int] = []
    about: list[int] = []
    for n, probe in enumerate(tqdm(probes, desc="features", unit="probe", disable=not progress)):
        text = probe_text(probe, text_field)
        matrix, _, named = detector.features([text])
        own = [column[c] for c in concept_ids_for(probe) if c in column]
        strength = matrix[:, FEATURES.index("sim_corpus")].copy()
        if probe.kind is ProbeKind.UTILITY:
            picks = [(int(np.argmax(strength)), False)]
        elif probe.kind is ProbeKind.FORGET:
            strength[own] = -np.inf
            picks = [(c, True) for c in own] + [(int(np.argmax(strength)), False)]
        else:
            picks = [(c, False) for c in own]
        for c, label in picks:
            if named[c]:
                continue
            rows.append(matrix[c])
            labels.append(label)
            kinds.append(probe.kind.value)
            owners.append(n)
            about.append(c)
    return TrainingRows(
        np.array(rows),
        np.array(labels),
        np.array(kinds),
        np.array(owners, dtype=np.int64),
        np.array(about, dtype=np.int64),
    )


def pick_threshold(
    probabilities: np.ndarray, rows: TrainingRows, max_neighbor: float, max_utility: float
) -> float | None:
    """Lowest threshold of 0.05, 0.06, ..., 0.99 meeting both false-positive budgets (per
    probe, max over its rows), or ``None`` when none does."""
    for percent in range(5, 100):
        threshold = percent / 100
        flagged = probabilities >= threshold
        ok = True
        for kind, budget in (("neighbor", max_neighbor), ("utility", max_utility)):
            mask = rows.kinds == kind
            if mask.any():
                probes_flagged = np.unique(rows.probe_rows[mask & flagged]).size
                probes_total = np.unique(rows.probe_rows[mask]).size
                ok = ok and probes_flagged / probes_total <= budget
        if ok:
            return threshold
    return None


@dataclass(frozen=True, slots=True)
class FittedScorer:
    """A scorer fitted by :func:`fit_scorer`; ``budgets_met`` is False when no threshold up to
    0.99 kept the training rows within both false-positive budgets (it is then 0.99)."""

    scorer: LogisticScorer
    budgets_met: bool
    rows_per_kind: dict[str, int]


def fit_scorer(
    concepts: ConceptList,
    probes: Sequence[Probe],
    encoder: MemoEncoder,
    *,
    max_neighbor_fpr: float = MAX_NEIGHBOR_FPR,
    max_utility_fpr: float = MAX_UTILITY_FPR,
    fitted_on: str = "",
    text_field: TextField = "prompt",
    progress: bool = True,
) -> FittedScorer:
    """Fit the scorer on ``probes`` with every one of ``concepts`` guarded at once (the rows of
    the module docstring), and pick its threshold within the two false-positive budgets."""
    index = build_index(concepts, encoder, progress=progress)
    encoder.prefetch(
        (s.text for p in probes for s in question_segments([probe_text(p, text_field)])),
        progress=progress,
        desc="encoding training probes",
    )
    encoder.save()
    ids = [c.id for c in concepts.concepts]
    detector = LearnedDetector(concepts, encoder, index, PLACEHOLDER)
    rows = training_rows(detector, ids, probes, text_field, progress=progress)
    weights, bias = fit_logistic(rows.features, rows.labels)
    probabilities = LogisticScorer(weights, bias).probabilities(rows.features)
    threshold = pick_threshold(probabilities, rows, max_neighbor_fpr, max_utility_fpr)
    kinds = {k: int((rows.kinds == k).sum()) for k in ("forget", "neighbor", "utility")}
    scorer = LogisticScorer(weights, bias, threshold or 0.99, fitted_on, encoder.name)
    return FittedScorer(scorer, threshold is not None, kinds)


def unmet_budgets_warning(max_neighbor_fpr: float, max_utility_fpr: float) -> str:
    return (
        f"warning: no threshold up to 0.99 keeps the training rows within "
        f"--max-neighbor-fpr {max_neighbor_fpr} and --max-utility-fpr "
        f"{max_utility_fpr}; using 0.99 (raise a budget, or add training targets)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default="1-50", help="RWKU training targets (default 1-50)")
    parser.add_argument("--exclude", default="51-100", help="targets whose utility items to skip")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, required=True, help="scorer JSON to write")
    add_budget_options(parser)
    parser.add_argument("--utility-per-set", type=int, default=200, help="first N of each set")
    parser.add_argument(
        "--encoder",
        default=DEFAULT_ENCODER,
        help="sentence-transformers model whose similarities to fit on: the one the guard "
        "will serve with (default: the bundled MiniLM)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help="vector store shared with `nescio eval detect` (default .nescio/index-cache)",
    )
    args = parser.parse_args(argv)
    train = parse_targets(args.train)
    excluded = set(parse_targets(args.exclude))
    probes = [
        p
        for spec in ("rwku:forget", "rwku:neighbor", "rwku:utility")
        for p in load_probes(spec, data_dir=args.data_dir, targets=train)
        if not excluded.intersection(p.target_ids)
    ]
    probes = first_per_set(probes, ProbeKind.UTILITY, args.utility_per_set)
    inner = load_encoder(args.encoder)
    encoder = MemoEncoder(inner, vector_store(args.cache_dir, inner))
    with tempfile.TemporaryDirectory() as folder:
        concepts = write_concepts(
            build(args.data_dir, train, CORPUS_DIR), Path(folder) / "concepts.yaml"
        )
        fitted = fit_scorer(
            concepts,
            probes,
            encoder,
            max_neighbor_fpr=args.max_neighbor_fpr,
            max_utility_fpr=args.max_utility_fpr,
            fitted_on=f"RWKU targets {args.train}",
        )
    if not fitted.budgets_met:
        print(unmet_budgets_warning(args.max_neighbor_fpr, args.max_utility_fpr), file=sys.stderr)
    args.out.write_text(fitted.scorer.to_json())
    print(fitted.scorer.to_json())
    print(f"training rows per kind: {fitted.rows_per_kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
