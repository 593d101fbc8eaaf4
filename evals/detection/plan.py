"""Which probes each guard is checked against, in each setting.

- ``single``: one guard per concept, holding only that concept; it sees the probes about that
  concept (forget, neighbour, utility tied to it) plus every non-forget probe that is about no
  listed concept (untargeted utility, holdout authors).
- ``all``: one guard with every concept; it sees every probe once.

Probes identical to one of the guard's in-scope examples are excluded (counted, not scored), so
no number is measured on the text the guard was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from evals.concept_sources import concept_ids_for
from evals.probes import Probe, ProbeKind
from guards.concepts import ConceptList


class Setting(StrEnum):
    SINGLE = "single"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Job:
    """One guard (its concept ids) and the probes to check against it."""

    setting: Setting
    concept_ids: tuple[str, ...]
    probes: tuple[Probe, ...]
    excluded: int


def plan(concepts: ConceptList, probes: Sequence[Probe], settings: Sequence[Setting]) -> list[Job]:
    known = {c.id for c in concepts.concepts}
    jobs: list[Job] = []
    for setting in settings:
        if setting is Setting.ALL:
            jobs.append(_job(concepts, setting, tuple(known), probes))
            continue
        for concept in concepts.concepts:
            mine = [p for p in probes if _belongs(p, concept.id, known)]
            jobs.append(_job(concepts, setting, (concept.id,), mine))
    return jobs


def _belongs(probe: Probe, concept_id: str, known: set[str]) -> bool:
    """A probe about listed concepts goes to their guards only; any other non-forget probe
    (untargeted, or about someone not in the list, like TOFU holdout authors) to every guard."""
    about = set(concept_ids_for(probe)) & known
    if about:
        return concept_id in about
    return not probe.target_ids or probe.kind is not ProbeKind.FORGET


def _job(
    concepts: ConceptList, setting: Setting, ids: tuple[str, ...], probes: Sequence[Probe]
) -> Job:
    examples = {e.strip() for cid in ids for e in concepts.get(cid).examples}
    kept = tuple(p for p in probes if p.query.strip() not in examples and p.prompt not in examples)
    return Job(setting, ids, kept, len(probes) - len(kept))
