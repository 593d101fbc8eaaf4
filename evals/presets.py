"""Benchmark presets for ``nescio eval detect --benchmark NAME``: concepts and probe sets that
belong together, so one command reproduces a benchmark's detection numbers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evals.concept_sources import BuiltConcepts
from evals.concept_sources import rwku as rwku_concepts
from evals.concept_sources import tofu as tofu_concepts
from evals.concept_sources import wmdp as wmdp_concepts
from evals.errors import EvalError

CORPUS_DIR = Path("forget_corpus")


@dataclass(frozen=True, slots=True)
class Preset:
    probe_specs: tuple[str, ...]
    uses_targets: bool


PRESETS = {
    "rwku": Preset(("rwku:forget", "rwku:neighbor", "rwku:utility"), uses_targets=True),
    "wmdp": Preset(("wmdp:all", "mmlu:all"), uses_targets=False),
    "tofu": Preset(
        (
            "tofu:forget10",
            "tofu:forget10_paraphrased",
            "tofu:holdout10",
            "tofu:real_authors",
            "tofu:world_facts",
        ),
        uses_targets=False,
    ),
}


def build_concepts(
    source: str, data_dir: Path, *, targets: Sequence[str] | None, split: str, domains: list[str]
) -> BuiltConcepts:
    """Concepts from ``source`` (rwku, tofu or wmdp); corpora under ``forget_corpus/``."""
    if source == "rwku":
        return rwku_concepts.build(data_dir, targets, CORPUS_DIR)
    if source == "tofu":
        return tofu_concepts.build(data_dir, split, CORPUS_DIR)
    if source == "wmdp":
        return wmdp_concepts.build(domains)
    raise EvalError(f"unknown concept source {source!r}; known: rwku, tofu, wmdp")
