"""Text normalisation for alias matching, robust to the usual obfuscation tricks.

Users (and attackers) write "J.K. Rowling", "j k rowling", "Ｊ．Ｋ． Ｒｏｗｌｉｎｇ", "Rоwling" with a
Cyrillic "о", "R0wl1ng", or "R o w l i n g". Everything is reduced to lowercase ASCII words: Unicode
NFKC, a confusable-letter map, transliteration of accents, leetspeak digits, and punctuation and
spacing collapsed. A second "squashed" form without spaces catches letter spacing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from unidecode import unidecode
from wordfreq import zipf_frequency

# Cyrillic and Greek letters that render like Latin ones; unidecode transliterates some of them
# phonetically ("Ѕ" -> "Dz"), which is wrong for an attacker's look-alike substitution.
_CONFUSABLES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
        "ԛ": "q", "ԝ": "w", "ɡ": "g", "ℓ": "l",
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
        "τ": "t", "υ": "u", "χ": "x", "ω": "w",
        "Η": "h", "Ν": "n", "Υ": "y",
    }
)  # fmt: skip
# Capital look-alikes, for :func:`readable`, which keeps case (normalize lowercases first).
_CAPITAL_CONFUSABLES = str.maketrans(
    dict(zip("АВЕКМНОРСТХЅІЈΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEKMHOPCTXSIJABEZHIKMNOPTYX", strict=True))
)
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"})
# Symbols standing for letters; mapped before normalisation, which would drop them.
_LEET_SYMBOLS = str.maketrans({"@": "a", "$": "s"})
_NON_WORD = re.compile(r"[^a-z0-9]+")
_ZERO_WIDTH = re.compile("[\u200b-\u200f\u2060\ufeff\u00ad]")


_WORD_RUN = re.compile(r"\w+", re.UNICODE)


def readable(text: str) -> str:
    """The text as a reader sees it, case and punctuation kept: NFKC (fullwidth letters become
    ASCII), zero-width characters removed, and in every word that mixes Latin letters with
    Cyrillic or Greek look-alikes the look-alikes replaced ("rаnѕоmwаrе" with Cyrillic а, ѕ, о
    becomes "ransomware"). Words written wholly in another script are left alone. What the
    encoder is given, so a homoglyph attack embeds like the word it imitates."""
    text = unicodedata.normalize("NFKC", _ZERO_WIDTH.sub("", text))
    if text.isascii():
        return text
    return _WORD_RUN.sub(_unconfused, text)


def _unconfused(match: re.Match[str]) -> str:
    word = match.group(0)
    if word.isascii() or not any(c.isascii() and c.isalpha() for c in word):
        return word
    return word.translate(_CAPITAL_CONFUSABLES).translate(_CONFUSABLES)


def normalize(text: str) -> str:
    """Lowercase ASCII words separated by single spaces."""
    text = unicodedata.normalize("NFKC", _ZERO_WIDTH.sub("", text))
    # Before lowercasing too: capital Eta looks like "H", its lowercase like "n".
    text = text.translate(_CONFUSABLES).lower().translate(_CONFUSABLES)
    return _NON_WORD.sub(" ", unidecode(text).lower()).strip()


def deleet(normalized: str) -> str:
    """Undo digit-for-letter substitutions on a normalised string ("r0wl1ng" -> "rowling")."""
    return normalized.translate(_LEET)


@dataclass(frozen=True, slots=True)
class NormalizedText:
    """The views of one text that alias matching searches."""

    spaced: str
    leet: str
    squashed: str

    @classmethod
    def of(cls, text: str) -> NormalizedText:
        leet = deleet(normalize(text.translate(_LEET_SYMBOLS)))
        return cls(spaced=f" {normalize(text)} ", leet=f" {leet} ", squashed=leet.replace(" ", ""))


@dataclass(frozen=True, slots=True)
class AliasPattern:
    """One surface form of a concept, ready to match.

    Word-boundary matching on the spaced form (plain and de-leeted) for every alias; substring
    matching on the squashed form only for long aliases, where an accidental hit inside other
    words is unlikely.
    """

    spaced: str
    squashed: str

    MIN_SQUASHED = 8

    @classmethod
    def of(cls, alias: str) -> AliasPattern:
        spaced = normalize(alias)
        return cls(spaced=f" {spaced} ", squashed=deleet(spaced).replace(" ", ""))

    def matches(self, text: NormalizedText) -> bool:
        if self.spaced.strip() == "":
            return False
        if self.spaced in text.spaced or self.spaced in text.leet:
            return True
        return len(self.squashed) >= self.MIN_SQUASHED and self.squashed in text.squashed


# At least ten per million English words (wordfreq's Zipf scale): an ordinary word.
COMMON_ZIPF = 4.0


@cache
def zipf(word: str) -> float:
    """How common ``word`` is in English, on wordfreq's Zipf scale (0: unknown, 7: "the")."""
    return float(zipf_frequency(word, "en"))


def _cased_words(form: str) -> list[re.Pattern[str]]:
    """For a capitalised alias of common words only: a pattern per word, matching it written
    with its capital; otherwise ``[]`` (the alias names the concept however it is written)."""
    words = re.findall(r"[A-Za-z]+", form)
    capitalised = [w for w in words if w[0].isupper()]
    if len(words) < 2 or not capitalised:
        return []
    if any(zipf(w.lower()) < COMMON_ZIPF for w in words):
        return []
    return [re.compile(rf"\b{w[0]}(?i:{w[1:]})\b") for w in capitalised]


class AliasMatcher:
    """Every concept's surface forms compiled once, in concept order.

    Built when a guard is built and shared by everything that asks "which concepts does this
    text name?" (both detectors and the output guard), so no request recompiles aliases.

    A capitalised alias made only of common English words ("Breaking Bad", "Iron Man") is a
    name only when the text writes it capitalised: "tips for breaking bad habits" does not name
    the series. Common: at least ``COMMON_ZIPF`` on wordfreq's Zipf scale (ten per million).
    """

    def __init__(self, forms_per_concept: Sequence[Sequence[str]]) -> None:
        self._patterns = [[AliasPattern.of(f) for f in forms] for forms in forms_per_concept]
        self._cased = [[_cased_words(f) for f in forms] for forms in forms_per_concept]
        # One flat list for :meth:`named_set`: a list of 100 concepts is scanned in one loop,
        # not a hundred calls.
        self._flat = [
            (concept, pattern, cased)
            for concept, (patterns, cases) in enumerate(
                zip(self._patterns, self._cased, strict=True)
            )
            for pattern, cased in zip(patterns, cases, strict=True)
        ]
        self.longest = max((len(f) for forms in forms_per_concept for f in forms), default=0)
        """Characters in the longest surface form."""

    def names(self, concept: int, view: NormalizedText, text: str | None = None) -> bool:
        """Whether ``view`` contains the name or an alias of the concept at position ``concept``;
        given the original ``text``, an alias of common words counts only written capitalised."""
        return any(
            p.matches(view) and (text is None or not cased or all(w.search(text) for w in cased))
            for p, cased in zip(self._patterns[concept], self._cased[concept], strict=True)
        )

    def named_set(self, view: NormalizedText, text: str | None = None) -> set[int]:
        """The positions of every concept :meth:`names` finds in ``view``, in one pass."""
        found: set[int] = set()
        for concept, pattern, cased in self._flat:
            if concept in found or not pattern.matches(view):
                continue
            if text is None or not cased or all(w.search(text) for w in cased):
                found.add(concept)
        return found
