"""Entity-aware name evidence: how a text uses a concept's name words when it does not write an
alias exactly.

Alias matching (:mod:`guards.normalize`) finds "Stephen King". People also write a name with
its middle names ("Stephen Edwin King", "Justin Drew Bieber"), or refer to the person by one
word ("King's debut novel", "Bieber was born"), and many texts use a name word as part of
*another* name: "Dakota Johnson" (the daughter of the actor Don Johnson), "The Lion King",
"___ Cooper" (a cloze asking for someone's first name). The three cases say very different
things about scope, so they are told apart on the text's capitalised runs (maximal sequences of
capitalised words, blanks and name particles such as "van"):

- ``full``: a run that starts with the concept's first name (or its initial, "R." for Robert, or
  a longer form of it, "Christopher" for Chris) and ends with its last name: the full name with
  middle names. Decisive, like an alias.
- ``bare``: a run made only of the concept's own name words ("King", "Van Gogh"): the person
  named by part of their name.
- ``embedded``: a run that contains a name word among other capitalised words: most often a
  different entity.

Matching is case-sensitive on transliterated text (a lowercase "king" is a common noun). Words
that open a sentence only because they are capitalised ("Which", "The", "Please") never start
a run. Name words shorter than :data:`MIN_WORD_CHARS` are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from unidecode import unidecode

MIN_WORD_CHARS = 3
MIN_PREFIX_CHARS = 3
# Lowercase words that belong inside a name ("Vincent van Gogh", "Leonardo di ser Piero").
PARTICLES = frozenset(
    {"van", "von", "der", "den", "de", "da", "di", "du", "del", "della", "la", "le", "bin", "ibn",
     "al", "ser"}
)  # fmt: skip
SUFFIXES = frozenset({"Jr", "Sr", "II", "III", "IV"})
# Capitalised only because they open a sentence, a label or a quoted title: never a name part.
_OPENER_WORDS = """
A About According After Also Although An And Answer Apart As At Before Besides Both But By
Can Could Describe Despite Did Do Does During Each Explain For From Give Had Has Have He Her
His How I If In Is It Its List Many Most Much Name Neither No Not Of On One Or Please
Pretend Question Since Some She So Tell That The Their There These They This Those Through
Throughout To Under Was We Were What When Where Whether Which While Who Whom Whose Why Will
With Would Yes You Your
"""
OPENERS = frozenset(_OPENER_WORDS.split())
_TOKEN = re.compile(r"___+|[A-Za-z](?:[A-Za-z'-]*[A-Za-z])?\.?|[^\sA-Za-z_]+")
_BLANK = "___"


@dataclass(frozen=True, slots=True)
class Mentions:
    """How one text mentions one concept's name words (see the module docstring)."""

    full: bool = False
    bare: bool = False
    embedded: bool = False


@dataclass(frozen=True, slots=True)
class _Form:
    first: str
    last: str


class NameMatcher:
    """Every concept's name words compiled once, in concept order (like ``AliasMatcher``)."""

    def __init__(self, forms_per_concept: Sequence[Sequence[str]]) -> None:
        self._words: list[frozenset[str]] = []
        self._forms: list[list[_Form]] = []
        self._owners: dict[str, list[int]] = {}
        for concept, forms in enumerate(forms_per_concept):
            words: set[str] = set()
            parsed: list[_Form] = []
            for form in forms:
                parts = [_strip(t) for t in _TOKEN.findall(unidecode(form)) if t[0].isalpha()]
                parts = [p for p in parts if p not in SUFFIXES]
                words.update(p for p in parts if p[0].isupper() or p.lower() in PARTICLES)
                capitalised = [p for p in parts if p[0].isupper()]
                if len(capitalised) >= 2:
                    parsed.append(_Form(capitalised[0], capitalised[-1]))
            self._words.append(frozenset(words))
            self._forms.append(parsed)
            for word in words:
                if len(word) >= MIN_WORD_CHARS and word[0].isupper():
                    self._owners.setdefault(word, []).append(concept)

    def mentions(self, texts: Sequence[str]) -> list[Mentions]:
        """Per concept: the kinds of mention found in any of ``texts``."""
        return self.merged(self.mentions_by_text(texts))

    def merged(self, by_text: Sequence[Sequence[Mentions]]) -> list[Mentions]:
        """Per concept, the mentions of :meth:`mentions_by_text` over all its texts."""
        columns = zip(*by_text, strict=True) if by_text else ([] for _ in self._words)
        return [
            Mentions(
                any(m.full for m in column),
                any(m.bare for m in column),
                any(m.embedded for m in column),
            )
            for column in columns
        ]

    def mentions_by_text(self, texts: Sequence[str]) -> list[list[Mentions]]:
        """Per text, per concept: the kinds of mention found in that text."""
        return [self._mentions(text) for text in texts]

    def _mentions(self, text: str) -> list[Mentions]:
        full = [False] * len(self._words)
        bare = [False] * len(self._words)
        embedded = [False] * len(self._words)
        for run in _runs(text):
            owners = {c for word in run for c in self._owners.get(word, ())}
            for c in owners:
                if self._is_full(c, run):
                    full[c] = True
                elif all(w in self._words[c] or w.lower() in PARTICLES for w in run):
                    bare[c] = True
                else:
                    embedded[c] = True
        return [Mentions(f, b, e) for f, b, e in zip(full, bare, embedded, strict=True)]

    def _is_full(self, concept: int, run: list[str]) -> bool:
        words = [w for w in run if w not in SUFFIXES]
        if len(words) < 2:
            return False
        return any(
            _same_first(words[0], f.first) and words[-1] == f.last for f in self._forms[concept]
        )


def _same_first(word: str, first: str) -> bool:
    """ "Robert" ~ "R", "Christopher" ~ "Chris", "J" ~ "John"; never on a blank."""
    if word == _BLANK:
        return False
    if word == first:
        return True
    if len(first) == 1 or len(word) == 1:
        return word[0] == first[0]
    shorter, longer = sorted((word, first), key=len)
    return len(shorter) >= MIN_PREFIX_CHARS and longer.startswith(shorter)


def _runs(text: str) -> list[list[str]]:
    """Maximal runs of capitalised words, blanks and particles (inside a run), possessives
    stripped; punctuation and lowercase words end a run, openers never start one."""
    runs: list[list[str]] = []
    current: list[str] = []

    def close() -> None:
        while current and current[-1].lower() in PARTICLES:
            current.pop()
        if current:
            runs.append(list(current))
        current.clear()

    for token in _TOKEN.findall(unidecode(text)):
        word = _strip(token)
        if token.startswith("_"):
            current.append(_BLANK)
        elif not token[0].isalpha():
            close()
        elif word[0].isupper() and (current or word not in OPENERS):
            current.append(word)
            if token.endswith(("'s", ".")) and len(word) > 1:
                close()
        elif current and word.lower() in PARTICLES:
            current.append(word)
        else:
            close()
    close()
    return runs


def _strip(token: str) -> str:
    """``King's`` -> ``King``; ``R.`` -> ``R``; other tokens unchanged."""
    token = token.removesuffix(".")
    return token[:-2] if token.endswith("'s") else token
