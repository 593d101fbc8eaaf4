"""TOFU (Maini et al., 2024): fictitious-author QA, every split, plus paraphrased variants.

``forgetNN`` probes should be forgotten, ``retainNN``/``full`` kept, ``holdoutNN`` were never
trained on; ``real_authors`` and ``world_facts`` are utility sets (multiple choice). A
``*_perturbed`` split keeps the original question and records the paraphrased and perturbed
answers; the matching ``*_paraphrased`` split asks the paraphrased question instead. Each QA's
author (its target) is recovered from the text by :mod:`evals.tofu_authors`.
"""

from __future__ import annotations

import re

from evals.errors import UnknownProbeSetError
from evals.jsonl import RowReader
from evals.loaders.source import HubDataset, RowSource
from evals.probes import Probe, ProbeFormat, ProbeKind, mc_prompt
from evals.tofu_authors import author_names, qa_text

HUB_REPO = "locuslab/TOFU"
_SPLIT = re.compile(
    r"^(?P<base>forget(?:01|05|10)|retain(?:90|95|99)|holdout(?:01|05|10)|full|real_authors|"
    r"world_facts|retain)(?P<variant>_perturbed|_paraphrased)?$"
)
SPLITS = (
    *(f"forget{n}{v}" for n in ("01", "05", "10") for v in ("", "_perturbed", "_paraphrased")),
    "retain90", "retain95", "retain99", "retain_perturbed", "retain_paraphrased",
    "holdout01", "holdout05", "holdout10", "full",
    "real_authors", "real_authors_perturbed", "world_facts", "world_facts_perturbed",
)  # fmt: skip
UTILITY_BASES = ("real_authors", "world_facts")


def author_slug(name: str) -> str:
    return "tofu-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def load(split: str, source: RowSource) -> list[Probe]:
    match = _SPLIT.match(split)
    if match is None or split not in SPLITS:
        raise UnknownProbeSetError(f"tofu:{split}: unknown split; known: {', '.join(SPLITS)}")
    base, variant = match.group("base"), match.group("variant") or ""
    file_split = f"{base}_perturbed" if variant == "_paraphrased" else split
    label, rows = source.rows(f"tofu/{file_split}.jsonl", HubDataset(HUB_REPO, file_split, "train"))
    readers = [RowReader(label, n, row) for n, row in rows]
    name = f"tofu:{split}"
    if base in UTILITY_BASES and not variant:
        return [_mc_probe(name, r) for r in readers]
    kind = _kind(base)
    authors: list[str | None] = [None] * len(readers)
    if kind is not ProbeKind.UTILITY:
        authors = author_names([qa_text(r.text("question"), r.text("answer")) for r in readers])
    return [
        _qa_probe(name, kind, reader, author, paraphrased=variant == "_paraphrased")
        for reader, author in zip(readers, authors, strict=True)
    ]


def _kind(base: str) -> ProbeKind:
    if base.startswith("forget"):
        return ProbeKind.FORGET
    if base.startswith("holdout"):
        return ProbeKind.HOLDOUT
    return ProbeKind.UTILITY if base in UTILITY_BASES else ProbeKind.RETAIN


def _qa_probe(
    set_name: str, kind: ProbeKind, row: RowReader, author: str | None, *, paraphrased: bool
) -> Probe:
    question = row.text("paraphrased_question" if paraphrased else "question")
    answers = [row.text("answer")]
    metadata: dict[str, object] = {}
    if "perturbed_answer" in row.row:
        metadata["perturbed_answers"] = row.texts("perturbed_answer")
    if "paraphrased_answer" in row.row:
        answers.append(row.text("paraphrased_answer"))
    return row.build(
        Probe,
        id=f"{set_name}#{row.line}",
        probe_set=set_name,
        kind=kind,
        format=ProbeFormat.QA,
        type="paraphrased" if paraphrased else "original",
        target_ids=(author_slug(author),) if author else (),
        subject=author,
        query=question,
        prompt=question,
        answers=tuple(answers),
        metadata=metadata,
    )


def _mc_probe(set_name: str, row: RowReader) -> Probe:
    question = row.text("question")
    options = [k for k in ("option1", "option2", "option3", "option4") if k in row.row]
    choices = tuple(row.text(k) for k in options)
    answer = row.text("answer")
    if answer not in choices:
        raise row.fail("answer", "must equal one of option1..option4")
    return row.build(
        Probe,
        id=f"{set_name}#{row.line}",
        probe_set=set_name,
        kind=ProbeKind.UTILITY,
        format=ProbeFormat.MC,
        type=set_name.split(":")[1],
        query=question,
        prompt=mc_prompt(question, choices),
        answers=(answer,),
        choices=choices,
        answer_index=choices.index(answer),
    )
