"""The benchmark registry and the ``benchmark:split`` spec syntax.

``rwku:forget_level2`` loads one split; group names load several (``rwku:forget`` = levels 1-3,
``rwku:neighbor``, ``rwku:utility``, ``mmlu:all``); ``custom:PATH`` or a bare ``*.jsonl`` path
loads the custom format. ``targets`` keeps only probes about those target ids (utility probes
are kept when any of their targets is selected).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from evals.errors import EvalError, UnknownProbeSetError
from evals.loaders import custom, multiple_choice, rwku, tofu
from evals.loaders.source import RowSource
from evals.probes import Probe

Loader = Callable[[str, RowSource], list[Probe]]


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A named benchmark: its splits (and split groups) and the function that loads one split."""

    name: str
    splits: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]
    load: Loader
    description: str


BENCHMARKS: dict[str, Benchmark] = {
    "rwku": Benchmark(
        "rwku",
        (*rwku.FORGET_SPLITS, *rwku.NEIGHBOR_SPLITS, *rwku.UTILITY_SPLITS),
        dict(rwku.GROUPS),
        rwku.load,
        "RWKU real-world people (targets 1-100): forget levels 1-3, neighbours, utility",
    ),
    "tofu": Benchmark(
        "tofu", tofu.SPLITS, {}, tofu.load, "TOFU fictitious authors: forget/retain/holdout/..."
    ),
    "wmdp": Benchmark(
        "wmdp",
        multiple_choice.WMDP_DOMAINS,
        {"all": multiple_choice.WMDP_DOMAINS},
        multiple_choice.load_wmdp,
        "WMDP hazardous-knowledge multiple choice (bio, cyber): to be forgotten",
    ),
    "mmlu": Benchmark(
        "mmlu",
        multiple_choice.MMLU_CATEGORIES,
        {"all": multiple_choice.MMLU_CATEGORIES},
        multiple_choice.load_mmlu,
        "MMLU category subsets (utility; hard negatives for WMDP)",
    ),
}


def split_names(spec: str) -> list[str]:
    """The concrete ``benchmark:split`` names a spec stands for."""
    benchmark_name, _, split = spec.partition(":")
    benchmark = BENCHMARKS.get(benchmark_name)
    if benchmark is None or not split:
        known = ", ".join(sorted(BENCHMARKS))
        raise UnknownProbeSetError(
            f"{spec!r}: expected BENCHMARK:SPLIT with BENCHMARK one of {known}, "
            "or custom:PATH.jsonl"
        )
    splits = benchmark.groups.get(split, (split,))
    for name in splits:
        if name not in benchmark.splits:
            raise UnknownProbeSetError(
                f"{benchmark_name}:{name}: unknown split; known: {', '.join(benchmark.splits)}"
            )
    return [f"{benchmark_name}:{name}" for name in splits]


def load_probes(
    spec: str,
    *,
    data_dir: Path | None,
    hub: bool = False,
    targets: Iterable[str] | None = None,
    limit: int | None = None,
) -> list[Probe]:
    """Probes of one spec, optionally restricted to ``targets`` and the first ``limit`` items."""
    if spec.startswith("custom:") or spec.endswith(".jsonl"):
        probes = custom.load(Path(spec.removeprefix("custom:")))
    else:
        source = RowSource(data_dir, hub=hub)
        probes = []
        for name in split_names(spec):
            benchmark, _, split = name.partition(":")
            probes += BENCHMARKS[benchmark].load(split, source)
    if targets is not None:
        wanted = set(targets)
        probes = [p for p in probes if wanted.intersection(p.target_ids)]
    return probes[:limit] if limit is not None else probes


def parse_targets(text: str) -> list[str]:
    """``"1-3,7"`` -> ``["1", "2", "3", "7"]``; non-numeric ids pass through unchanged."""
    ids: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if dash and low.isdigit() and high.isdigit():
            if int(low) > int(high):
                raise EvalError(f"target range {part!r} runs backwards")
            ids += [str(i) for i in range(int(low), int(high) + 1)]
        else:
            ids.append(part)
    if not ids:
        raise EvalError(f"no targets in {text!r}")
    return ids
