"""Partial name evidence: a conversation that names a concept only in part, misspelt, or in
pieces.

An alias or a full name decides on its own (:mod:`guards.naming`). People also write "Micheal
Jordon", "the hobit movies", "in G0T s8", "Kowalczyk's shifts", or give a name in pieces over
several turns ("First part: Michael." ... "Second part: Jordan."). None of that is decisive (a
surname is shared by many, a misspelling may be another word), but all of it is evidence that
the conversation is about the concept, so the detector lowers the concept's similarity bar
when it is present (:data:`guards.detector.PARTIAL_NAME_DISCOUNT`). Only what took *repair* to
read as the name counts: a surname or a first name written plainly is just as often a namesake
("Michael B. Jordan", another Okafor), and measured on the development suite it freed nothing
and flagged more namesakes than it caught. A concept has partial name evidence when the
conversation, all its texts together, contains:

- a *misspelt* distinctive word of its name, aliases or description's proper names
  ("Kowalcyzk", "hobit"): distinctive meaning below ``COMMON_ZIPF`` on wordfreq's Zipf scale,
  rarer than ten in a million English words ("Jordan", "White", "Paris" are not);
- every content word of one of its multi-word names, spread over several texts ("Paris" in one
  turn, "Hilton" in another) or with one of them misspelt ("Micheal Jordon");
- the acronym of a name of three or more words ("LOTR", "GoT", "ASOIAF"), written in capitals
  when the acronym is also a common word ("got");

where a word that is not itself a common English word counts as the name word it is one edit
away from (two for words of eight letters or more; a transposition is one edit).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rapidfuzz import process
from rapidfuzz.distance import OSA

from guards.concepts import Concept, ConceptList
from guards.names import OPENERS, PARTICLES
from guards.normalize import COMMON_ZIPF, deleet, normalize, zipf

MISSPELT_ZIPF = 3.0  # a word rarer than this may be a misspelling of a name word
MIN_WORD_CHARS = 4
MIN_FUZZY_CHARS = 5
LONG_WORD_CHARS = 8  # from here on, two edits
MIN_ACRONYM_WORDS = 3
# Words of a name that say nothing on their own ("The Lord of the Rings": lord, rings).
_FUNCTION_WORDS = frozenset({"the", "of", "and", "a", "an", "in", "on", "for", "to", "at", "by"})
_PROPER = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:['’]s)?\b")
_SHOUTED = re.compile(r"\b\w*[A-Z]\w*[A-Z]\w*\b")  # two capitals or more: "LOTR", "GoT", "G0T"


def _content_words(form: str) -> list[str]:
    words = deleet(normalize(form)).split()
    return [w for w in words if w not in _FUNCTION_WORDS and w not in PARTICLES]


def _description_names(concept: Concept) -> list[str]:
    """Capitalised words inside the description's sentences (not their first words, not
    sentence openers): the employer, hospital, town, franchise places."""
    words = (
        m.group(0).removesuffix("'s").removesuffix("’s")
        for m in _PROPER.finditer(concept.description)
    )
    return [w.lower() for w in words if w not in OPENERS]


class PartialNames:
    """Every concept's name words, multi-word names and acronyms, compiled once."""

    def __init__(self, concepts: ConceptList) -> None:
        self._count = len(concepts.concepts)
        self._distinctive: list[frozenset[str]] = []
        self._multi: list[list[frozenset[str]]] = []
        self._acronyms: list[frozenset[str]] = []
        vocabulary: set[str] = set()
        for concept in concepts.concepts:
            forms = concept.surface_forms
            words = {w for form in forms for w in _content_words(form)}
            words |= set(_description_names(concept))
            vocabulary |= {w for w in words if len(w) >= MIN_WORD_CHARS}
            self._distinctive.append(
                frozenset(w for w in words if len(w) >= MIN_WORD_CHARS and zipf(w) < COMMON_ZIPF)
            )
            multi = [frozenset(_content_words(form)) for form in forms]
            self._multi.append([m for m in multi if len(m) >= 2])
            self._acronyms.append(frozenset(_acronyms(forms)))
        self._vocabulary = sorted(vocabulary)
        # Which concepts a word can concern at all, so a check only evaluates those: with a
        # hundred concepts most texts concern none.
        self._concerned: dict[str, set[int]] = {}
        for c in range(self._count):
            keys = self._distinctive[c] | self._acronyms[c]
            for key in keys.union(*self._multi[c]):
                self._concerned.setdefault(key, set()).add(c)

    def evidence(self, texts: Sequence[str]) -> list[bool]:
        """Per concept: does the conversation (all of ``texts``) name it in part?"""
        if not self._count:
            return []
        per_text = [deleet(normalize(text)).split() for text in texts]
        shouted = {deleet(normalize(w)) for text in texts for w in _SHOUTED.findall(text)}
        repaired: set[str] = set()  # name words reached by correcting a misspelling
        words_by_text: list[set[str]] = []
        for written in per_text:
            corrected = {self._corrected(w) for w in written if w}
            repaired |= corrected - set(written)
            words_by_text.append(corrected)
        words: set[str] = set().union(*words_by_text)
        concerned: set[int] = set()
        for word in words | shouted:
            concerned |= self._concerned.get(word, set())
        found = [False] * self._count
        for c in concerned:
            found[c] = (
                bool(self._distinctive[c] & repaired)
                or any(
                    m <= words and not any(m <= t for t in words_by_text) for m in self._multi[c]
                )
                or any(m <= words and m & repaired for m in self._multi[c])
                or any(
                    a in shouted or (a in words and zipf(a) < MISSPELT_ZIPF)
                    for a in self._acronyms[c]
                )
            )
        return found

    def _corrected(self, word: str) -> str:
        """``word``, or the name word it misspells (see the module docstring)."""
        if len(word) < MIN_FUZZY_CHARS or zipf(word) >= MISSPELT_ZIPF or not self._vocabulary:
            return word
        budget = 2 if len(word) >= LONG_WORD_CHARS else 1
        found = process.extractOne(word, self._vocabulary, scorer=OSA.distance, score_cutoff=budget)
        return word if found is None else str(found[0])


def _acronyms(forms: Sequence[str]) -> set[str]:
    """Initials of every name of at least three words, with and without a leading "the"."""
    out = set()
    for form in forms:
        words = deleet(normalize(form)).split()
        for start in (0, 1 if words and words[0] == "the" else 0):
            initials = "".join(w[0] for w in words[start:])
            if len(words) - start >= MIN_ACRONYM_WORDS:
                out.add(initials)
    return out
