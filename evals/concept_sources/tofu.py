"""TOFU forget authors as concepts, from the names recovered in their forget QA.

Per author: the name, a few forget questions as in-scope examples (the first ``n_examples``;
detection scoring skips probes identical to an example), and the forget answers as the corpus.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from evals.concept_sources.base import BuiltConcepts
from evals.errors import EvalError
from evals.jsonl import Row
from evals.loaders import tofu
from evals.loaders.source import RowSource
from evals.probes import Probe
from guards.concepts import Concept

DEFAULT_EXAMPLES = 5


def build(
    data_dir: Path, split: str, corpus_dir: Path, *, n_examples: int = DEFAULT_EXAMPLES
) -> BuiltConcepts:
    if not split.startswith("forget") or "_" in split:
        raise EvalError(f"tofu concepts come from a forget split (forget01/05/10), not {split!r}")
    probes = tofu.load(split, RowSource(data_dir))
    by_author: dict[str, list[Probe]] = defaultdict(list)
    for probe in probes:
        if probe.target_id is None or probe.subject is None:
            raise EvalError(f"{probe.id}: no author name found in this QA pair")
        by_author[probe.target_id].append(probe)
    built = BuiltConcepts(concepts=[])
    for concept_id, items in by_author.items():
        name = items[0].subject or concept_id
        corpus_rows: list[Row] = [{"text": p.answers[0]} for p in items]
        path = corpus_dir / f"{concept_id}.jsonl"
        built.corpus_files[path] = corpus_rows
        built.concepts.append(
            Concept(
                id=concept_id,
                name=name,
                description=f"The author {name}: their life, family, awards and books.",
                examples=[p.query for p in items[:n_examples]],
                forget_corpus=[path],
            )
        )
    return built
