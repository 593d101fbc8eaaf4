"""``nescio calibrate``: fit per-concept thresholds and write them back into the concept file."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, get_args

from guards.concepts import ConceptList
from guards.direction import MIN_BACKGROUND
from guards.thresholds import FprBudget

if TYPE_CHECKING:
    from guards.calibrate import CalibrationSettings, ConceptResult

DESCRIPTION = f"""\
Fit each concept's detection threshold from labelled prompts and store it, with its measured
precision and recall, in a 'calibration:' block next to the concept ('threshold: calibrated').

In scope: the concept's 'examples' (+ --positives). Out of scope: its 'negatives', the other
concepts' examples (+ --negatives). The threshold is the lowest one whose false-positive rate on
the fit split stays within --target-fpr; precision and recall are then measured only on held-out
items (a 30% split, or k-fold cross-validation for concepts with fewer than 10 items per class).
Held-out items are also removed from the index while they are scored, so an example never
matches itself. The threshold (and direction) written is then refitted the same way on all items.

With --fpr-budget list, --target-fpr is the share of your traffic (--negatives without a
concept_id; all out-of-scope items when there is none) that the list, guarding all its
calibrated concepts at once, may flag (each concept's rate is set lower until the union fits);
by default each concept spends it alone, on all its out-of-scope items, so guarded together the
rates add up.

With --fpr-confidence C, the budget must hold for the false-positive rate's upper confidence
bound, not just on the fitted items, so it also holds on fresh traffic about C of the time.

Concepts with 'match: centroid' and at least {MIN_BACKGROUND} out-of-scope items also get a 'direction:' (their
centroid whitened against those items, which counts what they share with ordinary questions
less; its shrinkage is tried at several values and the default kept unless another is clearly
better on the fit split); give a few hundred prompts of your ordinary traffic as --negatives."""

EPILOG = """\
examples:
  nescio calibrate examples/concepts.yaml --dry-run
  nescio calibrate concepts.yaml --positives pos.jsonl --negatives neg.jsonl --target-fpr 0.02
  nescio calibrate concepts.yaml --concept harry-potter --output calibrated.yaml
  nescio calibrate topics.yaml --negatives traffic.jsonl   # + a direction per centroid concept
  nescio calibrate topics.yaml --negatives traffic.jsonl --fpr-budget list --target-fpr 0.03
  nescio calibrate topics.yaml --negatives traffic.jsonl --target-fpr 0.03 --fpr-confidence 0.9

files:
  --positives: JSONL lines {"concept_id": "harry-potter", "text": "Who is Hagrid?"}
  --negatives: JSONL lines {"text": "Who wrote Dune?"}, optionally with a concept_id to apply
               the negative to that concept only.
Writing goes through the schema, so YAML comments in the concept file are not kept."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``calibrate`` to the ``nescio`` command."""
    parser = subparsers.add_parser(
        "calibrate",
        help="fit per-concept thresholds on held-out examples and store them in the concept file",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("concepts", type=Path, help="concept list YAML to calibrate")
    parser.add_argument("--positives", type=Path, help="extra in-scope prompts (JSONL)")
    parser.add_argument("--negatives", type=Path, help="extra out-of-scope prompts (JSONL)")
    add_fpr_options(
        parser, default=0.05, target_help="largest false-positive rate allowed on the fit split"
    )
    parser.add_argument(
        "--holdout", type=float, default=0.3, help="held-out fraction (default 0.3)"
    )
    parser.add_argument(
        "--folds", type=int, default=5, help="folds for small concepts and scoring (default 5)"
    )
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument(
        "--concept",
        action="append",
        default=[],
        metavar="ID",
        help="calibrate only this concept (repeatable; default all)",
    )
    parser.add_argument("--encoder", default="minilm", help="sentence encoder (default minilm)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="keep the encoded texts here, so a rerun on the same prompts encodes nothing "
        "(e.g. .nescio/index-cache, shared with `nescio eval detect`)",
    )
    parser.add_argument(
        "--output", type=Path, help="write here instead of overwriting the concept file"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the fitted thresholds, write nothing"
    )
    parser.set_defaults(handler=run_calibrate)


def add_fpr_options(parser: argparse.ArgumentParser, *, default: float, target_help: str) -> None:
    """``--target-fpr``, ``--fpr-budget`` and ``--fpr-confidence``, shared by ``nescio
    calibrate`` and ``nescio eval detect --calibrate-split``."""
    parser.add_argument(
        "--target-fpr",
        type=float,
        default=default,
        metavar="T",
        help=f"{target_help} (default {default:g}); see --fpr-budget",
    )
    parser.add_argument(
        "--fpr-budget",
        choices=get_args(FprBudget),
        default="concept",
        help="'concept' (default): each concept alone may flag T of its out-of-scope items, so "
        "guarded together the rates add up; 'list': all the fitted concepts guarding at once "
        "may flag at most T of them",
    )
    parser.add_argument(
        "--fpr-confidence",
        type=float,
        metavar="C",
        help="hold T at confidence C (e.g. 0.9): the one-sided Clopper-Pearson upper bound of "
        "the false-positive rate must be within T, so the budget also holds on fresh traffic "
        "about C of the time; costs recall, and with too few out-of-scope items the strictest "
        "threshold is used (default: the rate on the fitted items, which fresh traffic exceeds "
        "about half the time)",
    )


def run_calibrate(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Handler of ``nescio calibrate``; returns the exit status."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from guards.calibrate import CalibrationSettings, apply_results, calibrate, read_labelled
    from guards.concepts import load_concepts
    from guards.encoder import load_encoder
    from guards.errors import CalibrationError

    concepts = load_concepts(args.concepts)
    known = {c.id for c in concepts.concepts}
    positives = (
        read_labelled(args.positives, known=known, require_concept=True) if args.positives else []
    )
    negatives = (
        read_labelled(args.negatives, known=known, require_concept=False) if args.negatives else []
    )
    try:
        settings = CalibrationSettings(
            target_fpr=args.target_fpr,
            holdout=args.holdout,
            folds=args.folds,
            seed=args.seed,
            budget=args.fpr_budget,
            confidence=args.fpr_confidence,
        )
    except ValueError as exc:
        raise CalibrationError(f"invalid option: {exc}") from exc
    results = calibrate(
        concepts,
        load_encoder(args.encoder),
        settings=settings,
        positives=positives,
        negatives=negatives,
        only=args.concept,
        progress=True,
        cache_dir=args.cache_dir,
    )
    print_results(results, settings, out)
    if not any(r.calibration for r in results):
        raise CalibrationError("no concept could be calibrated")
    if args.dry_run:
        print("dry run: nothing written", file=out)
        return 0
    target = args.output or args.concepts
    write_concepts(apply_results(concepts, results), target, args.concepts)
    print(f"wrote {target}", file=out)
    return 0


def print_results(
    results: Sequence[ConceptResult], settings: CalibrationSettings, out: TextIO
) -> None:
    header = f"{'concept':<24} {'threshold':>9} {'precision':>9} {'recall':>7} {'FPR':>6}  "
    print(header + "n_pos/n_neg  split", file=out)
    for result in results:
        fitted = result.calibration
        if fitted is None:
            print(f"{result.concept_id:<24} skipped: {result.skipped}", file=out)
            continue
        print(
            f"{result.concept_id:<24} {fitted.threshold:>9.3f} {fitted.precision:>9.3f} "
            f"{fitted.recall:>7.3f} {result.false_positive_rate:>6.3f}  "
            f"{fitted.n_positive:>5}/{fitted.n_negative:<5}  {fitted.split}"
            + (
                f"; direction on {result.direction.n_background} "
                f"(shrinkage {result.direction.shrinkage:g})"
                if result.direction
                else ""
            ),
            file=out,
        )
    budget = f"target FPR {settings.target_fpr:g}"
    if settings.confidence is not None:
        budget += f" at confidence {settings.confidence:g}"
    if settings.budget == "list" and results:
        budget += f" for the list: each concept at {results[0].target_fpr:.4g}"
    print(
        f"Thresholds were chosen on fit-split scores ({budget}); precision, "
        "recall and FPR were measured only on held-out items, each scored by a guard that did "
        "not index it (cross-validated rows: the pooled held-out folds). The stored threshold "
        "and direction are refitted on all items.",
        file=out,
    )


def write_concepts(concepts: ConceptList, target: Path, source: Path) -> None:
    """Write ``concepts``; corpus paths become absolute when the file moves to another folder."""
    if target.resolve().parent != source.resolve().parent:
        updated = [
            c.model_copy(
                update={
                    "forget_corpus": [concepts.corpus_path(p).resolve() for p in c.forget_corpus]
                }
            )
            for c in concepts.concepts
        ]
        concepts = concepts.model_copy(update={"concepts": updated})
    target.write_text(concepts.to_yaml(), encoding="utf-8")
