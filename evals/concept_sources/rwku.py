"""RWKU targets as concepts: the person's name, RWKU's one-line intro as the description, and
their forget passages as a per-target JSONL corpus. Aliases are derived from the name alone
(see :func:`name_aliases`). No probe text is used, so every RWKU probe stays out-of-sample for
detection."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from evals.concept_sources.base import BuiltConcepts, rwku_concept_id, slug
from evals.errors import EvalError
from evals.jsonl import Row
from evals.loaders import rwku
from evals.loaders.source import RowSource
from guards.concepts import Concept

_INITIAL = re.compile(r"\s+[A-Z]\.(?=\s)")
_SUFFIX = re.compile(r",?\s+(Jr|Sr)\.?$")


def name_aliases(name: str) -> list[str]:
    """Other ways people write a name, derived from the name itself (no outside knowledge).

    "Prince Harry, Duke of Sussex" -> "Prince Harry", "Duke of Sussex"; "John D. Rockefeller"
    -> "John Rockefeller"; "Robert Downey Jr." -> "Robert Downey". Single words are never
    added (a bare "Harry" or "Prince" would match far too much).
    """
    forms = [part.strip() for part in name.split(",")] if "," in name else []
    forms.append(_SUFFIX.sub("", _INITIAL.sub("", name)))
    aliases: list[str] = []
    for form in forms:
        if len(form.split()) >= 2 and form != name and form not in aliases:
            aliases.append(form)
    return aliases


def build(data_dir: Path, targets: Iterable[str] | None, corpus_dir: Path) -> BuiltConcepts:
    """Concepts for ``targets`` (all when ``None``); corpora go to ``corpus_dir`` (relative)."""
    source = RowSource(data_dir)
    known = {t.target_id: t for t in rwku.load_targets(source)}
    wanted = list(known) if targets is None else list(targets)
    missing = [t for t in wanted if t not in known]
    if missing:
        raise EvalError(f"RWKU has no target(s) {', '.join(missing)}; ids run 1-{len(known)}")
    passages: dict[str, list[Row]] = defaultdict(list)
    selected = set(wanted)
    for target_id, row in rwku.passages(source):
        if target_id in selected:
            passages[target_id].append({"text": row["text"]})
    built = BuiltConcepts(concepts=[])
    for target_id in wanted:
        target = known[target_id]
        concept_id = rwku_concept_id(target_id)
        corpus: list[Path] = []
        if passages[target_id]:
            path = corpus_dir / f"{concept_id}-{slug(target.name)}.jsonl"
            built.corpus_files[path] = passages[target_id]
            corpus.append(path)
        built.concepts.append(
            Concept(
                id=concept_id,
                name=target.name,
                aliases=name_aliases(target.name),
                description=target.intro,
                forget_corpus=corpus,
            )
        )
    return built
