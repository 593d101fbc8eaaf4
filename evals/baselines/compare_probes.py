"""The probe sets `compare` grades every system on, and the concept lists its proxies use.

Probes come from the evaluator's TOFU loader (`evals.loaders.tofu`), so the comparison reads the
same files, validated the same way, as `nescio eval run`. The proxy's concepts come from
`evals.concept_sources.tofu` (author name, forget answers as corpus, a few forget questions as
in-scope examples); those example questions are dropped from the forget probes of *every* row, so
no row is scored on an item a guard was built from and the rows stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evals.baselines.data import last_authors
from evals.concept_sources import tofu as tofu_concepts
from evals.concept_sources.base import write_concepts
from evals.loaders import tofu
from evals.loaders.source import RowSource
from evals.probes import Probe
from guards.concepts import Defaults, Policy


@dataclass(frozen=True)
class ProbeSets:
    """Forget (with paraphrased + perturbed answers), retain, and the two utility sets."""

    forget: list[Probe]
    retain: list[Probe]
    real_authors: list[Probe]
    world_facts: list[Probe]

    def counts(self) -> dict[str, int]:
        return {
            "forget": len(self.forget),
            "retain": len(self.retain),
            "real_authors": len(self.real_authors),
            "world_facts": len(self.world_facts),
        }


def load_probe_sets(
    data_dir: Path,
    forget: str,
    retain_split: str,
    *,
    retain_authors: int | None,
    forget_items: int | None,
    retain_items: int,
    utility_items: int,
    excluded_questions: set[str],
) -> ProbeSets:
    """Load the four sets. `retain_authors` keeps the split's last N authors (the ones a small
    CPU target model was trained on, see `nescio finetune --authors`)."""
    source = RowSource(data_dir)
    forget_probes = [
        p for p in tofu.load(f"{forget}_perturbed", source) if p.query not in excluded_questions
    ]
    retain = last_authors(tofu.load(retain_split, source), retain_authors)
    return ProbeSets(
        forget=forget_probes[:forget_items],
        retain=retain[:retain_items],
        real_authors=tofu.load("real_authors_perturbed", source)[:utility_items],
        world_facts=tofu.load("world_facts_perturbed", source)[:utility_items],
    )


def write_policy_concepts(
    data_dir: Path, forget: str, out_dir: Path, policies: list[Policy]
) -> tuple[dict[Policy, Path], set[str]]:
    """One concept file per policy (same concepts, `defaults.policy` set) under `out_dir`, and
    the example questions the concepts were built from."""
    built = tofu_concepts.build(data_dir, forget, Path("corpus"))
    examples = {question for concept in built.concepts for question in concept.examples}
    paths = {}
    for policy in policies:
        path = out_dir / f"concepts-{policy.value}.yaml"
        write_concepts(built, path, defaults=Defaults(policy=policy))
        paths[policy] = path
    return paths, examples
