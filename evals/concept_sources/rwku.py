"""RWKU targets as concepts: the person's name, RWKU's one-line intro as the description, and
their forget passages as a per-target JSONL corpus. Aliases are derived from the name (see
:func:`name_aliases`) and from the corpus's opening sentence, which names the person in full
(:func:`lead_names`: "Shawn Corey Carter (born ...)" for Jay-Z). No probe text is used, so every
RWKU probe stays out-of-sample for detection."""

from __future__ import annotations

import itertools
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
from guards.names import PARTICLES

_INITIAL = re.compile(r"\s+[A-Z]\.(?=\s)")
_SUFFIX = re.compile(r",?\s+(Jr|Sr)\.?$")
_WORD = r"[^\W\d_][\w'.-]*"
_LEAD = re.compile(rf"^\s*((?:{_WORD}\s+){{1,6}}?{_WORD})\s*\(")
_BORN = re.compile(r"\bborn\s+([^;,)]{3,80})[;,)]")
_ROMAN = re.compile(r"^[IVX]+\.?$")
_NICKNAME = re.compile(r"\s*[\"“][^\"”]+[\"”]")
LEAD_CHARS = 300
HONORIFICS = frozenset({"Sir", "Dame", "Dr.", "Lord", "Lady"})


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


def lead_names(passage: str) -> list[str]:
    """Full names the opening of a biography gives its subject, as encyclopedias write it.

    "Stephen Edwin King (born ...)" -> "Stephen Edwin King"; "Ye (YAY; born Kanye Omari West;
    ...)" -> "Kanye Omari West"; quoted nicknames and honorifics are dropped ("Sir Anthony
    Charles Lynton Blair" -> "Anthony Charles Lynton Blair"). Only runs of capitalised words (and
    name particles) of at least two words count; anything else yields nothing.
    """
    opening = _NICKNAME.sub("", passage[:LEAD_CHARS])
    found = []
    for pattern in (_LEAD, _BORN):
        match = pattern.search(opening)
        if match is None:
            continue
        words = [w for w in match.group(1).split() if w not in HONORIFICS]
        name = list(itertools.takewhile(_is_name_word, words))
        if len(name) >= 2 and (pattern is _BORN or len(name) == len(words)):
            found.append(" ".join(name))
    return found


def _is_name_word(word: str) -> bool:
    """Capitalised, no shouted syllable ("KAHN-yay" is a pronunciation guide; "O'Shea" and
    "III" are names), or a particle."""
    if word in PARTICLES:
        return True
    syllables = re.split(r"[-'’]", word)
    shouted = any(len(s) >= 3 and s.isupper() and not _ROMAN.match(s) for s in syllables)
    return word[0].isupper() and not shouted


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
        aliases = name_aliases(target.name)
        if passages[target_id]:
            for full in lead_names(passages[target_id][0]["text"]):
                if full != target.name and full not in aliases:
                    aliases.append(full)
        built.concepts.append(
            Concept(
                id=concept_id,
                name=target.name,
                aliases=aliases,
                description=target.intro,
                forget_corpus=corpus,
            )
        )
    return built
