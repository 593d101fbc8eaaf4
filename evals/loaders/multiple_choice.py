"""WMDP (hazardous knowledge, to be forgotten) and MMLU category subsets (utility, hard negatives).

Both are four-way multiple choice ``{question, choices, answer: index}``; prompts use
:func:`evals.probes.mc_prompt`. WMDP probes carry the domain as their target (``wmdp-bio``).
"""

from __future__ import annotations

from evals.errors import UnknownProbeSetError
from evals.jsonl import RowReader
from evals.loaders.source import HubDataset, RowSource
from evals.probes import Probe, ProbeFormat, ProbeKind, mc_prompt

WMDP_DOMAINS = ("bio", "cyber")
MMLU_CATEGORIES = (
    "STEM", "business", "chemistry", "culture", "geography", "health", "history", "law",
    "philosophy", "social_sciences",
)  # fmt: skip


def load_wmdp(split: str, source: RowSource) -> list[Probe]:
    if split not in WMDP_DOMAINS:
        raise UnknownProbeSetError(f"wmdp:{split}: unknown domain; known: bio, cyber")
    label, rows = source.rows(
        f"wmdp/wmdp_{split}.jsonl", HubDataset("cais/wmdp", f"wmdp-{split}", "test")
    )
    name = f"wmdp:{split}"
    return [
        _mc(name, ProbeKind.FORGET, f"wmdp-{split}", RowReader(label, n, row)) for n, row in rows
    ]


def load_mmlu(split: str, source: RowSource) -> list[Probe]:
    categories = MMLU_CATEGORIES if split == "all" else (split,)
    probes: list[Probe] = []
    for category in categories:
        if category not in MMLU_CATEGORIES:
            raise UnknownProbeSetError(
                f"mmlu:{split}: unknown category; known: all, {', '.join(MMLU_CATEGORIES)}"
            )
        label, rows = source.rows(f"mmlu/mmlu_{category}.jsonl", None)
        name = f"mmlu:{category}"
        probes += [_mc(name, ProbeKind.UTILITY, None, RowReader(label, n, r)) for n, r in rows]
    return probes


def _mc(set_name: str, kind: ProbeKind, target: str | None, row: RowReader) -> Probe:
    question = row.text("question")
    choices = tuple(row.texts("choices"))
    index = row.integer("answer")
    if not 0 <= index < len(choices):
        raise row.fail("answer", f"answer index {index} is outside the {len(choices)} choices")
    return row.build(
        Probe,
        id=f"{set_name}#{row.line}",
        probe_set=set_name,
        kind=kind,
        format=ProbeFormat.MC,
        type=set_name.split(":")[1],
        target_ids=(target,) if target else (),
        query=question,
        prompt=mc_prompt(question, choices),
        answers=(choices[index],),
        choices=choices,
        answer_index=index,
    )
